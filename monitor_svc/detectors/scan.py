"""Data drift: a two-sample test of each recent window against the reference data, over several
sliding windows, for every feature, at every sample.

For window w (the last w samples) and a numeric feature, the statistic is the standardised
difference of means, |z| = |mean_w - mean_ref| / (sd_ref * sqrt(1/w + 1/n_ref)); for a
categorical feature it is the chi-square of the window's category counts against the reference
frequencies (two-sample scaled, unseen categories in one "other" bucket), turned into a normal
score (Wilson-Hilferty) so that both kinds compare on one scale. The detector alarms when the
largest score over windows and features passes one threshold. Short windows catch large shifts
at once, long ones small shifts, and until the longest window has filled, the window since the
start counts too (after a start or an alarm, all the data seen is the best evidence);
calibrating one threshold for the maximum over every (window, feature) pair is the multiple-
testing control: the family-wise false-alarm rate at each sample is what the budget allows,
however many features there are. Memory is O(longest window x features); an update is vectorised
over the batch with cumulative sums.

The threshold is calibrated by simulation, not from a table: stationary streams are
bootstrapped from the reference data, each scored against its own bootstrapped reference (so
the error of estimating the reference is part of the null), and the threshold is set where
alarms come once per `expected_run_length` samples. After an alarm the detector starts afresh
(its windows refill), as in the simulation. That simulation costs seconds of CPU, so each
threshold is computed once per process for its inputs (`THRESHOLDS`): every deployment of a
model version, and each of its replicas' first feedback, shares it. A new version's scan
(`DriftScan.calibrating`) is calibrated in the background: the rows it is fed meanwhile wait and
are scanned, with the same sample numbers, once its threshold is known, so the feedback that
brings a rollout's first rows (and the labels matched to them) does not wait for the simulation.
The simulation runs in a child process at background priority (`calibrate_in_child`): in a
thread of the Monitor's it held the interpreter's lock whenever the OS let it run, and every
call the Monitor served waited behind it (at 400 requests/s, a label call took 20-30 ms instead
of 11).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import multiprocessing
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass

import numpy as np

from monitor_svc.detectors import Alarm
from monitor_svc.detectors.slots import FairSlots

WINDOWS = (8, 16, 32, 64, 128, 256)
NUMERIC, CATEGORICAL = "numeric", "categorical"
# Values (rows x features, float64: 16 MiB) a scan keeps while it is calibrated; past them the
# oldest go unscanned, so a flood of feedback during a rollout costs neither memory nor waiting.
BACKLOG_VALUES = 1 << 21
# Calibrations tried per scan: one that fails (its child killed, out of memory) is tried again.
CALIBRATION_ATTEMPTS = 3
# Calibration children at once (each a core and up to hundreds of MB), one per model owner.
CALIBRATION_CHILDREN = 2


@dataclass(frozen=True)
class Profile:
    """What a reference sample says about each feature, and how rows are encoded against it:
    a numeric feature is one standardised column; a categorical one is a column per reference
    category plus "other", each (indicator - p) / sqrt(p)."""

    kinds: tuple[str, ...]
    mean: np.ndarray  # per numeric feature
    sd: np.ndarray
    categories: tuple[np.ndarray, ...]  # per categorical feature, its reference categories
    probabilities: tuple[np.ndarray, ...]  # ... and their frequencies (+ "other" last)
    n: int

    @classmethod
    def fit(cls, reference: np.ndarray, kinds: Sequence[str]) -> Profile:
        numeric = reference[:, [k == NUMERIC for k in kinds]]
        sd = numeric.std(axis=0, ddof=1) if numeric.shape[0] > 1 else np.ones(numeric.shape[1])
        categories, probabilities = [], []
        for column in np.flatnonzero([k == CATEGORICAL for k in kinds]):
            values, counts = np.unique(reference[:, column], return_counts=True)
            # "other" gets half a sample's worth of probability, so an unseen category counts.
            p = np.append(counts, 0.5) / (reference.shape[0] + 0.5)
            categories.append(values)
            probabilities.append(p)
        return cls(
            tuple(kinds), numeric.mean(axis=0), np.where(sd > 0, sd, 1.0), tuple(categories),
            tuple(probabilities), reference.shape[0],
        )  # fmt: skip

    def encode(self, rows: np.ndarray) -> np.ndarray:
        numeric = rows[:, [k == NUMERIC for k in self.kinds]]
        parts = [(numeric - self.mean) / self.sd]
        columns = np.flatnonzero([k == CATEGORICAL for k in self.kinds])
        for column, values, p in zip(columns, self.categories, self.probabilities, strict=True):
            index = np.searchsorted(values, rows[:, column])
            known = (index < values.size) & (values[np.minimum(index, values.size - 1)] == rows[:, column])
            onehot = np.zeros((rows.shape[0], p.size))
            onehot[np.arange(rows.shape[0]), np.where(known, index, p.size - 1)] = 1.0
            parts.append((onehot - p) / np.sqrt(p))
        return np.hstack(parts)

    def groups(self) -> list[tuple[str, slice]]:
        """(kind, encoded columns) per feature, numeric features first, as `encode` lays them out."""
        numeric = sum(k == NUMERIC for k in self.kinds)
        found = [(NUMERIC, slice(j, j + 1)) for j in range(numeric)]
        start = numeric
        for p in self.probabilities:
            found.append((CATEGORICAL, slice(start, start + p.size)))
            start += p.size
        return found

    def feature_order(self) -> list[int]:
        """Feature index of each group in `groups()`."""
        numeric = [j for j, k in enumerate(self.kinds) if k == NUMERIC]
        return numeric + [j for j, k in enumerate(self.kinds) if k == CATEGORICAL]


def _wilson_hilferty(chi2: np.ndarray, df: int) -> np.ndarray:
    """A chi-square with `df` degrees of freedom as a standard normal score."""
    c = 2.0 / (9.0 * df)
    return (np.cbrt(chi2 / df) - (1.0 - c)) / np.sqrt(c)


def _scores(
    encoded: np.ndarray, history: int, count: int, windows: Sequence[int], profile: Profile
) -> tuple[np.ndarray, np.ndarray]:
    """Per new row (after the first `history` rows of `encoded`): each feature's score, the
    maximum over windows, and that window. `count` is how many samples came before the new rows
    since the start."""
    rows = encoded.shape[0] - history
    cumulative = np.vstack([np.zeros((1, encoded.shape[1])), np.cumsum(encoded, axis=0)])
    end = np.arange(history + 1, history + rows + 1)
    seen = count + np.arange(1, rows + 1)
    groups = profile.groups()
    scores = np.full((rows, len(groups)), -np.inf)
    which = np.zeros((rows, len(groups)), dtype=np.int64)
    longest = max(windows)
    for w in (*windows, None):
        if w is None:  # the window since the start, until it is as long as the longest
            valid = (seen > min(windows)) & (seen < longest)
            span = np.minimum(seen, longest)
        else:
            valid = seen >= w
            span = np.full(rows, w)
        if not valid.any():
            continue
        sums = cumulative[end] - cumulative[np.maximum(end - span, 0)]
        scale = (span + span * span / profile.n)[:, None] if w is None else w + w * w / profile.n
        for g, (kind, columns) in enumerate(groups):
            if kind == NUMERIC:
                score = np.abs(sums[:, columns.start]) / np.sqrt(np.ravel(scale) if w is None else scale)
            else:
                chi2 = (sums[:, columns] ** 2).sum(axis=1) / (np.ravel(scale) if w is None else scale)
                score = _wilson_hilferty(chi2, columns.stop - columns.start - 1)
            score[~valid] = -np.inf
            higher = score > scores[:, g]
            scores[higher, g], which[higher, g] = score[higher], (span[higher] if w is None else w)
    return scores, which


def _alarms_per_sample(series: np.ndarray, threshold: float, dead_time: int) -> float:
    """Exceedances closer than `dead_time` to the previous one are one alarm (after an alarm the
    detector's windows refill)."""
    above = np.flatnonzero(series > threshold)
    if above.size == 0:
        return 0.0
    return (1 + np.count_nonzero(np.diff(above) > dead_time)) / series.size


def calibrate(
    reference: np.ndarray,
    kinds: Sequence[str],
    expected_run_length: float,
    windows: Sequence[int] = WINDOWS,
    seed: int = 0,
    replicates: int = 20,
) -> float:
    """The threshold whose false alarms on bootstrapped stationary streams come once per
    `expected_run_length` samples (simulating 100 expected alarms, between 200,000 and 2,000,000
    samples)."""
    rng = np.random.default_rng(seed)
    n_ref = reference.shape[0]
    length = int(min(max(100 * expected_run_length, 200_000), 2_000_000)) // replicates
    series = []
    for _ in range(replicates):
        profile = Profile.fit(reference[rng.integers(0, n_ref, n_ref)], kinds)
        stream = profile.encode(reference[rng.integers(0, n_ref, length)])
        series.append(_scores(stream, 0, 0, windows, profile)[0].max(axis=1))
    joined = np.concatenate(series)
    target = 1.0 / expected_run_length
    low, high = 0.0, float(joined.max()) + 1e-9
    for _ in range(40):
        middle = (low + high) / 2
        if _alarms_per_sample(joined, middle, min(windows)) > target:
            low = middle
        else:
            high = middle
    return high


def calibrate_in_child(*inputs, cancelled: threading.Event | None = None) -> float:
    """`calibrate(*inputs)` in a child process of its own (forked from a server that has this
    module imported), niced: a calibration may come late (its drift events with it), while the
    retraining jobs, runtimes and rpcs it competes with may not. Once `cancelled` is set, the
    child is killed and this raises CancelledError; if this process dies, the child ends too
    (its parent is the fork server, so it watches a pipe only this process writes to)."""
    receiving, sending = _CHILDREN.Pipe(duplex=False)
    watched, held_open = _CHILDREN.Pipe(duplex=False)
    child = _CHILDREN.Process(
        target=_calibrate_and_send, args=(sending, watched, inputs), name="calibrate", daemon=True
    )
    child.start()
    sending.close()
    watched.close()
    try:
        while not receiving.poll(0.25):
            if cancelled is not None and cancelled.is_set():
                child.kill()
                raise CancelledError("no drift scan waits for this threshold any more")
        outcome = receiving.recv()
    except EOFError:  # it died (killed, out of memory) before it answered
        outcome = RuntimeError("the calibration process ended without a threshold")
    finally:
        receiving.close()
        held_open.close()
        child.join()
    if isinstance(outcome, BaseException):
        raise outcome
    return float(outcome)


def _calibrate_and_send(sending, watched, inputs: tuple) -> None:
    os.nice(10)
    threading.Thread(target=_exit_when_closed, args=(watched,), daemon=True).start()
    try:
        sending.send(calibrate(*inputs))
    except Exception as err:
        sending.send(err)


def _exit_when_closed(watched) -> None:
    """Ends this process once the other end of `watched` is closed: the process that asked for
    the calibration died, or no longer wants it."""
    with contextlib.suppress(EOFError):
        watched.recv()
    os._exit(1)


# Children fork from a server process started once (exec'd, not forked from the Monitor and its
# gRPC threads) with this module imported.
_CHILDREN = multiprocessing.get_context("forkserver")
_CHILDREN.set_forkserver_preload([__name__])


class Thresholds:
    """Calibrated thresholds by what they were calibrated from, the most recent `size`. A missing
    one is calibrated once, whoever asks for it meanwhile, by `calibrator` (in a child process),
    waited for on a thread of its own; at most CALIBRATION_CHILDREN run at once, one per owner,
    taken in turns (`slots`), so a tenant's wide models or strict policies, which calibrate for
    minutes, delay its own calibrations only. The threads are daemons, so a stopping Monitor does
    not wait for them. A calibration no scan waits for any more (`forget`: its version was
    replaced within seconds, as a fast series of rollouts does) is stopped, and the next to ask
    for the same threshold starts another."""

    def __init__(
        self, size: int = 1024, calibrator: Callable[..., float] = calibrate_in_child, slots: FairSlots | None = None
    ):
        self._size = size
        self._calibrator = calibrator
        self._slots = slots or FairSlots(CALIBRATION_CHILDREN)
        self._known: OrderedDict[bytes, float] = OrderedDict()
        self._pending: dict[bytes, tuple[Future[float], threading.Event]] = {}  # and its cancel
        self._waiting: collections.Counter[bytes] = collections.Counter()  # who waits for each pending one
        self._lock = threading.Lock()

    def get(self, reference: np.ndarray, kinds: Sequence[str], expected_run_length: float,
            windows: Sequence[int], seed: int) -> float:  # fmt: skip
        return self.future(reference, kinds, expected_run_length, windows, seed).result()

    def future(self, reference: np.ndarray, kinds: Sequence[str], expected_run_length: float,
               windows: Sequence[int], seed: int, owner: str = "") -> Future[float]:  # fmt: skip
        """The threshold, known or being calibrated (in `owner`'s turn)."""
        inputs = (reference.shape, reference.dtype.str, tuple(kinds), expected_run_length, tuple(windows), seed)
        key = hashlib.sha256(repr(inputs).encode() + np.ascontiguousarray(reference).tobytes()).digest()
        with self._lock:
            if key in self._known:
                known: Future[float] = Future()
                known.set_result(self._known[key])
                return known
            if key not in self._pending:
                self._pending[key] = (Future(), threading.Event())
                calibrating = (reference.copy(), tuple(kinds), expected_run_length, tuple(windows), seed)
                threading.Thread(
                    target=self._calibrate, args=(key, self._pending[key], calibrating, owner), name="calibrate",
                    daemon=True,
                ).start()  # fmt: skip
            self._waiting[key] += 1
            return self._pending[key][0]

    def forget(self, future: Future[float]) -> None:
        """One that asked for `future` no longer waits for it; with none left, it is stopped (and
        whoever asks next starts afresh instead of getting the stopped one)."""
        with self._lock:
            for key, (pending, cancel) in self._pending.items():
                if pending is future:
                    self._waiting[key] -= 1
                    if self._waiting[key] <= 0:
                        cancel.set()
                        del self._pending[key], self._waiting[key]
                    return

    def _calibrate(self, key: bytes, entry: tuple[Future[float], threading.Event], inputs: tuple, owner: str) -> None:
        pending, cancel = entry
        try:
            if not self._slots.acquire(owner, cancel):
                raise CancelledError("no drift scan waits for this threshold any more")
            try:
                threshold = self._calibrator(*inputs, cancelled=cancel)
            finally:
                self._slots.release(owner)
        except BaseException as err:
            self._settled(key, entry)  # the next one to ask tries again
            if isinstance(err, CancelledError):
                pending.cancel()
            else:
                pending.set_exception(err)
            return
        self._settled(key, entry, threshold)
        pending.set_result(threshold)

    def _settled(self, key: bytes, entry: tuple, threshold: float | None = None) -> None:
        with self._lock:
            if self._pending.get(key) is entry:  # not forgotten and asked for again meanwhile
                del self._pending[key], self._waiting[key]
            if threshold is not None:
                self._known[key] = threshold
                while len(self._known) > self._size:
                    self._known.popitem(last=False)


THRESHOLDS = Thresholds()


def _calling(callback: Callable[[], None]) -> Callable[[Future[float]], None]:
    return lambda _: callback()


class DriftScan:
    def __init__(
        self,
        reference: np.ndarray,
        threshold: float | Future[float],
        names: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        windows: Sequence[int] = WINDOWS,
    ):
        """`threshold`, or its calibration under way: rows fed before it is known wait (see update)."""
        reference = np.asarray(reference, dtype=np.float64)
        features = reference.shape[1]
        self.names = tuple(names) if names is not None else tuple(f"x{j}" for j in range(features))
        self.kinds = tuple(kinds) if kinds is not None else (NUMERIC,) * features
        self.calibration = threshold if isinstance(threshold, Future) else None  # until it is known
        self.threshold = 0.0 if isinstance(threshold, Future) else threshold
        self._waiting: list[np.ndarray] = []  # rows fed while it is calibrated, oldest first
        self._ask_again: Callable[[], Future[float]] | None = None  # another calibration, if one fails
        self._attempts = 1
        self._when_calibrated: list[Callable[[], None]] = []
        self.unavailable = ""  # why this scan tests nothing: its threshold could not be calibrated
        self.windows = tuple(sorted(windows))
        self._profile = Profile.fit(reference, self.kinds)
        order = self._profile.feature_order()
        self._group_names = [self.names[j] for j in order]
        self._group_kinds = [self.kinds[j] for j in order]
        self._history = np.zeros((0, self._profile.encode(reference[:1]).shape[1]))
        self._count = 0  # samples since the start or the last alarm
        self.samples = 0  # samples since the start
        self.last_scores: dict[str, float] = {}
        self.closed = False

    @classmethod
    def calibrating(
        cls,
        reference: np.ndarray,
        expected_run_length: float,
        names: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        windows: Sequence[int] = WINDOWS,
        seed: int = 0,
        wait: bool = False,
        owner: str = "",
    ) -> DriftScan:
        """A scan whose threshold may still be calibrated in the background (see `update`), in
        `owner`'s turn, or with `wait` is known when this returns."""
        reference = np.asarray(reference, dtype=np.float64)
        kinds = tuple(kinds) if kinds is not None else (NUMERIC,) * reference.shape[1]
        ask = lambda: THRESHOLDS.future(reference, kinds, expected_run_length, windows, seed, owner)  # noqa: E731
        threshold = ask()
        scan = cls(reference, threshold.result() if wait or threshold.done() else threshold, names, kinds, windows)
        scan._ask_again = ask
        return scan

    def when_calibrated(self, callback: Callable[[], None]) -> None:
        """`callback()` once the calibration under way (or the one that replaces it after a
        failure) has ended, in whatever thread ends it: it should only hand work over."""
        self._when_calibrated.append(callback)
        if self.calibration is not None:
            self.calibration.add_done_callback(_calling(callback))

    def close(self) -> None:
        """Nobody feeds this scan any more: a calibration only it waits for stops (the rows it
        kept are never scanned, and closing it again does nothing more)."""
        if self.calibration is not None and not self.closed:
            THRESHOLDS.forget(self.calibration)
        self.closed = True

    @property
    def waiting(self) -> int:
        """Rows fed while the threshold is calibrated, not scanned yet."""
        return sum(rows.shape[0] for rows in self._waiting)

    def update(self, rows: np.ndarray) -> list[Alarm]:
        """Feeds rows (oldest first); returns the alarms they raised, in order. While the threshold
        is calibrated, rows wait (the newest BACKLOG_VALUES) and this returns none; it never waits
        itself. Alarms carry the sample numbers of their rows either way."""
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(self.kinds))
        if self.closed or self.unavailable:  # nobody reads it, or it cannot test
            self.samples += rows.shape[0]
            return []
        if self.calibration is not None:
            self._waiting.append(rows)
            self._keep_newest_waiting()
            if not self._calibrated():
                return []
            rows, self._waiting = np.vstack(self._waiting), []
        encoded = self._profile.encode(rows)
        alarms = []
        while encoded.shape[0]:
            joined = np.vstack([self._history, encoded])
            scores, which = _scores(joined, self._history.shape[0], self._count, self.windows, self._profile)
            best = scores.max(axis=1)
            over = np.flatnonzero(best > self.threshold)
            used = int(over[0]) + 1 if over.size else encoded.shape[0]
            self.samples += used
            self.last_scores = {n: float(s) for n, s in zip(self._group_names, scores[used - 1], strict=True)}
            if over.size:
                alarms.append(self._alarm(scores[used - 1], which[used - 1]))
                self._history, self._count = self._history[:0], 0
            else:
                self._count += used
                self._history = joined[-self.windows[-1] :]
            encoded = encoded[used:]
        return alarms

    def _keep_newest_waiting(self) -> None:
        """Past BACKLOG_VALUES waiting, the oldest rows are counted as seen and never scanned."""
        values = sum(r.size for r in self._waiting)
        while values > BACKLOG_VALUES:
            oldest = self._waiting[0]
            dropped = min(oldest.shape[0], -(-(values - BACKLOG_VALUES) // len(self.kinds)))
            self._waiting[0] = oldest[dropped:]
            if not self._waiting[0].shape[0]:
                self._waiting.pop(0)
            self.samples += dropped
            values -= dropped * len(self.kinds)

    def _calibrated(self) -> bool:
        """Whether the threshold is known now; a calibration that failed or was stopped is asked
        for again, CALIBRATION_ATTEMPTS times in all, then the scan says why it cannot test."""
        assert self.calibration is not None
        while self.calibration.done():
            if not self.calibration.cancelled() and self.calibration.exception() is None:
                self.threshold, self.calibration = self.calibration.result(), None
                return True
            why = "stopped" if self.calibration.cancelled() else str(self.calibration.exception())
            if self._ask_again is None or self._attempts >= CALIBRATION_ATTEMPTS:
                self.unavailable = f"its threshold could not be calibrated ({self._attempts} attempts; the last: {why})"
                self.samples += self.waiting
                self.calibration, self._waiting = None, []
                return False
            self._attempts += 1
            self.calibration = self._ask_again()
            for callback in self._when_calibrated:
                self.calibration.add_done_callback(_calling(callback))
        return False

    def _alarm(self, scores: np.ndarray, windows: np.ndarray) -> Alarm:
        strongest = int(np.argmax(scores))
        drifted = [self._group_names[g] for g in np.flatnonzero(scores > self.threshold)]
        return Alarm(
            sample=self.samples,
            features=tuple(drifted),
            statistic="chi2" if self._group_kinds[strongest] == CATEGORICAL else "mean-z",
            value=float(scores[strongest]),
            threshold=self.threshold,
            window=int(windows[strongest]),
        )
