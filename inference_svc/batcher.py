"""Dynamic batching, as Triton's dynamic batcher: requests for one model, unary or streamed,
are queued, stacked along the batch axis up to `max_batch_size` rows (waiting at most
`max_queue_delay` for more), run in one ONNX Runtime call, and split back.

Dispatch is event-driven: a request arriving at an idle batcher starts a batch at once, and a
finishing batch starts the next from whatever queued meanwhile, so under load batches form by
themselves even with no delay. The queue is bounded in rows: when full, submit raises
ResourceExhausted at once.

Where the call runs: on a dedicated session thread, off the event loop, except when the call
is predicted (from the model's measured time per row) to take less than `inline_compute_us`.
On this kind of machine a thread handoff costs about 150 us of latency, far more than, say,
an 11 us logistic regression; such calls run on the loop, where they block it for less time
than the handoff would. Set inline_compute_us to 0 to keep every call on the thread.

A long call (a 1.5M-row request takes ~70 ms) does not hold up short ones: while the session
thread runs a call predicted longer than `LONG_CALL_FACTOR` x inline_compute_us, a short request
that finds the queue empty runs on the loop beside it (ONNX Runtime sessions take concurrent
calls). Short calls still batch behind one another as before, where batching pays.

A call predicted longer than `WIDE_CALL_NS` runs on the wide runner when there is one (a session
with a thread per core, session.py) and no other worker of the runtime runs a long call
(cores.py): otherwise a stream of large requests, which lands on one worker, would use one core
of the machine. Shorter calls keep one thread each: waking a pool's threads costs more than it
saves on them.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from inference_svc.cores import LongCalls
from inference_svc.settings import BatchPolicy
from inference_svc.stats import ModelStats
from mlaas.errors import ResourceExhausted

Feeds = dict[str, np.ndarray]
Runner = Callable[[Feeds], Feeds]
# One successful ONNX call: (rows, requests, input ns, infer ns, output ns).
Call = tuple[int, int, int, int, int]
Outcome = tuple[list["Feeds | BaseException"], list[Call]]
LONG_CALL_FACTOR = 20
WIDE_CALL_NS = 2_000_000


class Observer(Protocol):
    """Metrics hooks, called on the event loop."""

    def batch(self, rows: int, requests: int, queued_rows: int) -> None: ...

    def queued(self, seconds: float) -> None: ...


@dataclass(slots=True)
class _Item:
    feeds: Feeds
    rows: int
    future: asyncio.Future
    enqueued_ns: int
    taken: bool = False  # into a batch
    abandoned: bool = False  # its caller went away while it queued: it is skipped

    def stacks_with(self, other: _Item) -> bool:
        """Whether the two can share one call: every input alike but for the batch dimension."""
        return all(a.shape[1:] == other.feeds[name].shape[1:] for name, a in self.feeds.items())


class CallCost:
    """Predicts an ONNX call's own time as fixed + per-row cost. The fixed part follows the
    fastest recent single-row calls (a minimum that creeps up by `drift` per call): a call
    measured slow because the process was preempted says nothing about the model, and on a
    busy machine that happens often enough to send loop-sized calls to the thread. The slope is
    an exponentially weighted mean over larger calls."""

    def __init__(self, weight: float = 0.2, drift: float = 0.05):
        self._weight = weight
        self._drift = drift
        self._fixed_ns: float | None = None
        self._per_row_ns: float | None = None  # unknown until a call of several rows

    def _blend(self, old: float | None, new: float) -> float:
        return new if old is None else (1 - self._weight) * old + self._weight * new

    def observe(self, rows: int, ns: int) -> None:
        if rows == 1 or self._fixed_ns is None:
            single = ns / rows
            self._fixed_ns = single if self._fixed_ns is None else min(single, self._fixed_ns * (1 + self._drift))
        else:
            # A call of any size bounds the fixed part: a slow first call cannot stick under batched load.
            self._fixed_ns = min(self._fixed_ns, ns)
            self._per_row_ns = self._blend(self._per_row_ns, max(0.0, (ns - self._fixed_ns) / (rows - 1)))

    def predict(self, rows: int) -> float | None:
        """None while unknown: before any call, and for several rows before any such call (a
        first 1.5M-row request must not be taken for a 1-row one and run on the loop)."""
        if self._fixed_ns is None or (rows > 1 and self._per_row_ns is None):
            return None
        return self._fixed_ns + (self._per_row_ns or 0.0) * (rows - 1)


class DynamicBatcher:
    def __init__(
        self,
        runner: Runner,
        policy: BatchPolicy,
        stats: ModelStats,
        name: str,
        observer: Observer | None = None,
        wide_runner: Runner | None = None,
        long_calls: LongCalls | None = None,
    ):
        self._runner = runner
        self._wide_runner = wide_runner
        self._long_calls = long_calls
        self._policy = policy
        self._stats = stats
        self._observer = observer
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued_rows = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"onnx-{name}")
        self._busy = False
        self._running_long = False  # the session thread runs a call short ones need not wait for
        self._timer: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._cost = CallCost()

    def expect(self, rows: int, ns: int) -> None:
        """Seeds the call-cost estimate (from a warm-up call), so the first request can run at once."""
        self._cost.observe(rows, ns)

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    async def close(self) -> None:
        """Finishes what is queued, then releases the session thread."""
        while self._queue or self._busy:
            self._idle.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._dispatch()
            await self._idle.wait()
        self._executor.shutdown(wait=True)

    def submit(self, feeds: Feeds, rows: int) -> asyncio.Future:
        """Queues one request; the future resolves to its own slice of the outputs."""
        limit = self._policy.max_queue_rows
        if self._queued_rows + rows > limit and self._queue:
            raise ResourceExhausted(
                f"inference queue is full ({self._queued_rows} rows waiting, limit {limit}); retry later"
            )
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        item = _Item(feeds, rows, future, time.perf_counter_ns())
        future.add_done_callback(lambda _: self._forget_if_abandoned(item))
        self._queue.append(item)
        self._queued_rows += rows
        if not self._busy:
            self._schedule(loop)
        return future

    def run_now(self, feeds: Feeds, rows: int) -> Feeds | BaseException | None:
        """Runs a request at once on the event loop when nothing is queued, nothing runs but a
        long call, the model does not wait to fill batches, and the call is predicted short, and
        returns its outputs or the call's error; None otherwise (then `submit` it). The common
        case at low concurrency, without a queue entry or a future."""
        policy = self._policy
        if (self._busy and not self._running_long) or self._queue:
            return None
        if policy.max_queue_delay_us > 0 and policy.batchable:
            return None
        predicted_ns = self._cost.predict(rows)
        if predicted_ns is None or predicted_ns >= policy.inline_compute_us * 1000:
            return None
        started = time.perf_counter_ns()
        try:
            outputs = self._runner(feeds)
        except Exception as err:
            return err
        infer_ns = time.perf_counter_ns() - started
        self._note_queued(0)
        self._note_call((rows, 1, 0, infer_ns, 0))
        return outputs

    def _note_queued(self, waited_ns: int) -> None:
        self._stats.queue.add(waited_ns)
        if self._observer is not None:
            self._observer.queued(waited_ns / 1e9)

    def _note_call(self, call: Call) -> None:
        rows, requests, input_ns, infer_ns, output_ns = call
        self._stats.record_batch(rows, requests, input_ns, infer_ns, output_ns)
        self._cost.observe(rows, infer_ns)
        if self._observer is not None:
            self._observer.batch(rows, requests, self._queued_rows)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        policy = self._policy
        if policy.max_queue_delay_us <= 0 or not policy.batchable or self._queued_rows >= policy.max_batch_size:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._dispatch()
        elif self._timer is None:
            # Hold a partial batch for at most max_queue_delay after its oldest request arrived.
            waited = (time.perf_counter_ns() - self._queue[0].enqueued_ns) / 1e9
            self._timer = loop.call_later(max(0.0, policy.max_queue_delay_us / 1e6 - waited), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._busy and self._queue:
            self._dispatch()

    def _forget_if_abandoned(self, item: _Item) -> None:
        """A queued request whose caller went away (cancelled) frees its queue room at once and
        is never run."""
        if item.future.cancelled() and not item.taken:
            item.abandoned = True
            self._queued_rows -= item.rows

    def _take_batch(self) -> list[_Item]:
        """The next batch: queued requests in order, as long as they stack (a model with a
        dynamic non-batch dimension may get requests that cannot share a call)."""
        policy = self._policy
        while self._queue and self._queue[0].abandoned:
            self._queue.popleft()
        if not self._queue:
            return []
        batch = [self._queue.popleft()]
        rows = batch[0].rows
        if policy.batchable:
            while self._queue and rows + self._queue[0].rows <= policy.max_batch_size:
                if self._queue[0].abandoned:
                    self._queue.popleft()
                    continue
                if not self._queue[0].stacks_with(batch[0]):
                    break
                item = self._queue.popleft()
                batch.append(item)
                rows += item.rows
        for item in batch:
            item.taken = True
        self._queued_rows -= rows
        return batch

    def _dispatch(self) -> None:
        batch = self._take_batch()
        if not batch:  # only abandoned requests were queued
            self._idle.set()
            return
        started = time.perf_counter_ns()
        for item in batch:
            self._note_queued(started - item.enqueued_ns)
        self._busy = True
        self._idle.clear()
        predicted_ns = self._cost.predict(sum(item.rows for item in batch))
        inline_ns = self._policy.inline_compute_us * 1000
        if predicted_ns is not None and predicted_ns < inline_ns:
            self._complete(batch, self._execute(batch))
            return
        self._running_long = predicted_ns is None or predicted_ns >= LONG_CALL_FACTOR * inline_ns
        long_call = predicted_ns is not None and predicted_ns >= WIDE_CALL_NS
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._execute, batch, long_call)
        future.add_done_callback(lambda f: self._complete(batch, f.result()))

    def _complete(self, batch: list[_Item], outcome: Outcome) -> None:
        results, calls = outcome
        for call in calls:
            self._note_call(call)
        for item, result in zip(batch, results, strict=True):
            if item.future.done():  # the caller went away
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
        self._busy = self._running_long = False
        if self._queue:
            self._schedule(asyncio.get_running_loop())
        else:
            self._idle.set()

    def _run_long(self, wide_runner: Runner, feeds: Feeds) -> Feeds:
        if self._long_calls is None:
            return wide_runner(feeds)
        with self._long_calls.running() as alone:
            return (wide_runner if alone else self._runner)(feeds)

    def _execute(self, batch: list[_Item], long_call: bool = False) -> Outcome:
        """Stack, run, split; returns the results and the successful calls' timings. A failing
        batch is retried request by request, so one bad request cannot fail its neighbours."""
        t0 = time.perf_counter_ns()
        try:
            if len(batch) == 1:
                feeds = batch[0].feeds
            else:
                feeds = {name: np.concatenate([item.feeds[name] for item in batch]) for name in batch[0].feeds}
            t1 = time.perf_counter_ns()
            outputs = (
                self._run_long(self._wide_runner, feeds) if long_call and self._wide_runner else self._runner(feeds)
            )
        except Exception as err:
            if len(batch) == 1:
                return [err], []
            singles = [self._execute([item]) for item in batch]
            return [r for results, _ in singles for r in results], [c for _, calls in singles for c in calls]
        t2 = time.perf_counter_ns()
        if len(batch) == 1:
            results: list[Feeds | BaseException] = [outputs]
        else:
            offsets = np.cumsum([item.rows for item in batch])[:-1]
            pieces = {name: np.split(array, offsets) for name, array in outputs.items()}
            results = [{name: pieces[name][i] for name in outputs} for i in range(len(batch))]
        rows = sum(item.rows for item in batch)
        return results, [(rows, len(batch), t1 - t0, t2 - t1, time.perf_counter_ns() - t2)]
