"""Automatic retraining on streams it was not built on: river's generators (bench/anchors/
river_streams.py, 10 seeds each) with an abrupt change of the labelling function (STAGGER, Sine,
Agrawal, Mixed, SEA, Hyperplane), a gradual one (Sine 0 to Sine 2 over 2,000 rows) and two controls (stationary,
covariate-only). The champion is the recipe below fitted on the first concept; the Monitor's own
performance detector, retraining schedule, recipe training and paired champion/challenger test
(monitor_svc) decide when to retrain and whether to roll out, labels arriving with their
predictions, in chunks of 10. Beside it, in the same run: no retraining, river's ADWIN on the
same error stream (the detection delay of a well-known detector) and an oracle (the recipe fitted
on 3,000 rows of the new concept alone).

    .venv/bin/python bench/retraining_bench.py [--seeds 10] [--streams sea ...] [--judging cross holdout]
        [--first-round-labels N] [--lag ROWS] [--growth G --max-rounds N]   # ~25 minutes

A round fits at the very row it becomes due and its version serves from there on, unless `--lag`
says how many rows the live loop serves meanwhile (at 100 requests/s and 2 s per round: 200);
`--growth` and `--max-rounds` try another retraining schedule (RetrainSchedule) than the Monitor's.

Each stream runs once per `--judging`: rounds judged by cross-validation, as the Monitor judges
them (out of bag: the recipe is a forest), by 4 folds as it judges other recipes (`folds`), and
on a held-out quarter, as it judges private rounds (and judged every round before).

Reported per stream (medians over seeds unless said): the labels from the change to the first
performance alarm (ours, ADWIN), retrainings started and rolled out per run, rows served from the
change until the first new version, accuracy after the change in windows of 500 (mean over
seeds), and the accuracy in the second 1,000 rows after the change (gradual: after it completed)
beside no retraining and the oracle; other judgings under "STREAM, by folds" and "STREAM, held
out". Writes
bench/results/retraining.json (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from venvs import ensure_venv

from mlaas.recipes import recipe_from_steps
from mlaas.retraining.rounds import cross_fit, folds_of, holdout_split, judge, train
from mlaas.v1 import types_pb2
from monitor_svc.detectors.error_rate import ErrorRateDetector
from monitor_svc.monitoring import DEFAULT_CHALLENGER_CONFIDENCE, default_policy
from monitor_svc.retraining import RetrainSchedule

HERE = Path(__file__).resolve().parent
BEFORE, WIDTH, CHUNK, WINDOW = 2_000, 2_000, 10, 500
ABRUPT = ("stagger", "sine", "agrawal", "mixed", "sea", "hyperplane")
GRADUAL, CONTROLS = ("sine_gradual",), ("stationary", "covariate_only")
RECIPE = recipe_from_steps([("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 30, "random_state": 0})])
CLASSIFICATION = types_pb2.TASK_CLASSIFICATION


JUDGED = {"folds": "by folds", "holdout": "held out"}  # the runs' names beside the Monitor's judging


@dataclass(frozen=True)
class Options:
    """How the simulated Monitor retrains (the defaults: as it does)."""

    first_round_labels: int | None = None  # the policy's, if not its default
    judging: str = "cross"  # as the Monitor judges; by folds whatever the recipe; on a held-out quarter
    lag: int = 0  # rows served between a round's labels and its version serving (the live loop's time)
    growth: float | None = None  # the schedule's, if not its default
    max_rounds: int | None = None


def run(X: np.ndarray, y: np.ndarray, champion, retrain: bool, options: Options = Options()) -> dict:
    """The stream served and labelled as the Monitor sees it; what served each row, when."""
    policy = default_policy()
    if options.first_round_labels is not None:
        policy.first_round_labels = options.first_round_labels
    detector = ErrorRateDetector(policy.performance_expected_run_length)
    schedule = RetrainSchedule.for_policy(policy)
    if options.growth is not None:
        schedule.growth = options.growth
    if options.max_rounds is not None:
        schedule.max_rounds = options.max_rounds
    judging = options.judging
    model, version_start = champion, 0  # the row the serving version's detector starts at
    predictions = np.zeros(y.size, dtype=y.dtype)
    alarms, retrainings = [], []
    running = None  # (the row its version serves from, whether it rolls out, its model)
    for start in range(0, y.size, CHUNK):
        stop = min(start + CHUNK, y.size)
        if running is not None and start >= running[0]:
            _, rolled_out, challenger = running
            if rolled_out:  # what serves learns from all the labels it was judged on
                model, version_start = challenger, start
                detector = ErrorRateDetector(policy.performance_expected_run_length)
            schedule.finished(rolled_out, start)
            running = None
        predictions[start:stop] = model.predict(X[start:stop])
        errors = (predictions[start:stop] != y[start:stop]).astype(float)
        for alarm in detector.update(errors):  # alarm.sample counts this version's labels
            alarms.append(version_start + alarm.sample)
            schedule.on_alarm(version_start + max(alarm.sample - alarm.window, 0), stop)
        due = schedule.due(stop) if retrain else None
        if due is None:
            continue
        window_X, window_y = X[due.since : stop], y[due.since : stop]
        unseen_from = due.unseen_after - due.since
        if judging in ("cross", "folds"):
            fold = folds_of(stop - due.since, unseen_from, seed=stop)
            fit = lambda X, y: train(RECIPE, X, y)  # noqa: E731
            challenger, predicted = cross_fit(fit, window_X, window_y, fold, out_of_bag=judging == "cross")
            held = fold >= 0
        else:
            fit, held = holdout_split(stop - due.since, seed=stop, unseen_from=unseen_from)
            predicted = train(RECIPE, window_X[fit], window_y[fit]).predict(window_X[held])
            challenger = None
        verdict = judge(
            CLASSIFICATION, window_y[held], model.predict(window_X[held]), predicted, DEFAULT_CHALLENGER_CONFIDENCE,
            due.follow_up,
        )  # fmt: skip
        serving_from = stop + options.lag
        retrainings.append({"at_row": serving_from, "labels": stop - due.since, "rolled_out": verdict.roll_out})
        if verdict.roll_out and challenger is None:
            challenger = train(RECIPE, window_X, window_y)
        running = (serving_from, verdict.roll_out, challenger)
    return {"right": (predictions == y).tolist(), "alarms": alarms, "retrainings": retrainings}


def river_streams(seeds: int, work: Path) -> np.lib.npyio.NpzFile:
    bin_dir = ensure_venv("river", ["river"])
    if bin_dir is None:
        raise SystemExit("river could not be installed: the streams come from its generators")
    out = work / "streams.npz"
    subprocess.run([str(bin_dir / "python"), "river_streams.py", "streams", str(out), str(seeds)],
                   cwd=HERE / "anchors", check=True)  # fmt: skip
    return np.load(out)


def adwin_alarms(errors: dict[str, np.ndarray], work: Path) -> dict[str, list[int]]:
    path = work / "errors.npz"
    np.savez(path, **errors)
    found = subprocess.run(
        [str(ensure_venv("river", ["river"]) / "python"), "river_streams.py", "adwin", str(path)],
        cwd=HERE / "anchors", check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(found.stdout)


def first_after(values: list[int], row: int) -> int | None:
    return next((v - row for v in values if v > row), None)


def median_or_none(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--first-round-labels", type=int, default=None, help="the policy's (default: its default; 500: no early round)"
    )
    parser.add_argument("--streams", nargs="+", default=[*ABRUPT, *GRADUAL, *CONTROLS])
    parser.add_argument(
        "--judging", nargs="+", choices=["cross", "folds", "holdout"], default=["cross", "holdout"],
        help="how rounds are judged; each in the same run (cross: as the Monitor, out of bag for this forest; "
        "folds: by 4 folds whatever the recipe; held out: as before cross-validated rounds)",
    )  # fmt: skip
    parser.add_argument("--lag", type=int, default=0, help="rows served while a round runs (default 0: instant)")
    parser.add_argument("--growth", type=float, default=None, help="labels of a round after a win / the last's")
    parser.add_argument("--max-rounds", type=int, default=None, help="rounds per series (default: the schedule's)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "retraining.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlaas-retraining-bench-"))
    data = river_streams(args.seeds, work)
    results, errors = {}, {}
    for name, judging in [(n, j) for n in args.streams for j in args.judging]:
        settled = BEFORE + (WIDTH if name in GRADUAL else 0)  # where the new concept is all there is
        runs = []
        for seed in range(args.seeds):
            key = f"{name}_{seed}"
            X, y = data[f"X_{key}"], data[f"y_{key}"]
            champion = train(RECIPE, data[f"train_X_{key}"], data[f"train_y_{key}"])
            options = Options(args.first_round_labels, judging, args.lag, args.growth, args.max_rounds)
            ours, frozen = run(X, y, champion, True, options), run(X, y, champion, False)
            oracle = train(RECIPE, data[f"oracle_X_{key}"], data[f"oracle_y_{key}"])
            errors[key] = 1.0 - np.asarray(frozen["right"], dtype=float)
            after = slice(settled + 1_000, settled + 2_000)
            rolled_out_rows = [r["at_row"] for r in ours["retrainings"] if r["rolled_out"]]
            runs.append({
                "delay": first_after(ours["alarms"], BEFORE),
                "false_alarms_before": sum(a <= BEFORE for a in ours["alarms"]),
                "retrainings": len(ours["retrainings"]),
                "rolled_out": sum(r["rolled_out"] for r in ours["retrainings"]),
                "rows_until_new_version": first_after(rolled_out_rows, BEFORE),
                "windows": [float(np.mean(ours["right"][s : s + WINDOW])) for s in range(BEFORE, y.size, WINDOW)],
                "first_1000": float(np.mean(ours["right"][settled : settled + 1_000])),
                "second_1000": float(np.mean(ours["right"][after])),
                "no_retraining_second_1000": float(np.mean(frozen["right"][after])),
                "oracle_second_1000": float(np.mean(oracle.predict(X[after]) == y[after])),
                "retraining_log": ours["retrainings"],
            })  # fmt: skip
        results[name if judging == "cross" else f"{name}, {JUDGED[judging]}"] = runs
        print(name, judging, "done", flush=True)
    adwin = adwin_alarms(errors, work)
    summary = {}
    for name, runs in results.items():
        for seed, r in enumerate(runs):
            r["adwin_delay"] = first_after(adwin[f"{name.split(',')[0]}_{seed}"], BEFORE)
        summary[name] = {
            "delay": median_or_none([r["delay"] for r in runs]),
            "adwin_delay": median_or_none([r["adwin_delay"] for r in runs]),
            "false_alarms_before_change": sum(r["false_alarms_before"] for r in runs),
            "retrainings_per_run": statistics.mean(r["retrainings"] for r in runs),
            "rolled_out_per_run": statistics.mean(r["rolled_out"] for r in runs),
            "rows_until_new_version": median_or_none([r["rows_until_new_version"] for r in runs]),
            "windows": [round(statistics.mean(w), 3) for w in zip(*(r["windows"] for r in runs), strict=True)],
            "first_1000": round(statistics.mean(r["first_1000"] for r in runs), 4),
            "second_1000": round(statistics.mean(r["second_1000"] for r in runs), 4),
            "no_retraining": round(statistics.mean(r["no_retraining_second_1000"] for r in runs), 4),
            "oracle": round(statistics.mean(r["oracle_second_1000"] for r in runs), 4),
        }
    print(json.dumps(summary, indent=1))
    args.out.write_text(json.dumps({"summary": summary, "runs": results}) + "\n")


if __name__ == "__main__":
    main()
