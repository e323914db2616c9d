"""Automatic retraining on SEA: the champion (degree-2 polynomial + logistic regression, fitted
on concept 0) serves a stream that switches to concept 3 (10% label noise); the monitor's own
detector, trigger, recipe training and champion/challenger judgement (monitor_svc) decide when
to retrain and whether to roll out. Accuracy after the drift beside no retraining and an oracle
(the same recipe fitted on 5,000 samples of concept 3), with labels at once and 200 samples late.

    .venv/bin/python bench/retraining_bench.py [--seeds 10]

Writes bench/results/retraining.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from mlaas.recipes import recipe_from_steps
from mlaas.scenarios import sea, sea_classifier
from mlaas.v1 import types_pb2
from monitor_svc.detectors.error_rate import ErrorRateDetector
from monitor_svc.retraining import RetrainTrigger, holdout_split, judge, score, train

HERE = Path(__file__).resolve().parent
BEFORE, AFTER, CHUNK = 2_000, 10_000, 10
RECIPE = recipe_from_steps(
    [
        ("sklearn.preprocessing.PolynomialFeatures", {"degree": 2}),
        ("sklearn.preprocessing.StandardScaler", {}),
        ("sklearn.linear_model.LogisticRegression", {"max_iter": 1000}),
    ]
)
CLASSIFICATION = types_pb2.TASK_CLASSIFICATION


def run(seed: int, label_delay: int, retrain: bool, performance_ert: float, min_improvement: float) -> dict:
    rng = np.random.default_rng(5_000 + seed)
    X0, y0 = sea(BEFORE, 0, rng)
    X3, y3 = sea(AFTER, 3, rng)
    X, y = np.vstack([X0, X3]), np.concatenate([y0, y3])
    model = sea_classifier()
    detector, trigger = ErrorRateDetector(performance_ert), RetrainTrigger()
    predictions = np.zeros(y.size, dtype=np.int64)
    labeled = 0  # labels arrived so far (in order)
    retrainings = []
    for start in range(0, y.size, CHUNK):
        stop = min(start + CHUNK, y.size)
        predictions[start:stop] = model.predict(X[start:stop])
        arrived = max(0, stop - label_delay)
        if not retrain or arrived <= labeled:
            labeled = max(labeled, arrived)
            continue
        errors = predictions[labeled:arrived] != y[labeled:arrived]
        for alarm in detector.update(errors):
            trigger.on_alarm(alarm, labeled + alarm.sample - detector.samples + errors.size)
        labeled = arrived
        since = trigger.due(labeled)
        if since is None:
            continue
        fit_idx, held_idx = holdout_split(labeled - since, seed=seed)
        window_X, window_y = X[since:labeled], y[since:labeled]
        challenger = train(RECIPE, window_X[fit_idx], window_y[fit_idx])
        verdict = judge(
            score(CLASSIFICATION, window_y[held_idx], model.predict(window_X[held_idx])),
            score(CLASSIFICATION, window_y[held_idx], challenger.predict(window_X[held_idx])),
            min_improvement,
        )
        retrainings.append({"at_sample": stop, "trained_on": int(fit_idx.size), "rolled_out": verdict.roll_out})
        if verdict.roll_out:  # judged on the held-out part; what serves learns from all of it
            model, detector = train(RECIPE, window_X, window_y), ErrorRateDetector(performance_ert)
        trigger.finished(labeled)
    return {
        "accuracy_after": float(np.mean(predictions[BEFORE:] == y[BEFORE:])),
        "retrainings": retrainings,
    }


def oracle_accuracy(seed: int) -> float:
    rng = np.random.default_rng(5_000 + seed)
    sea(BEFORE, 0, rng)
    X3, y3 = sea(AFTER, 3, rng)
    Xo, yo = sea(5_000, 3, np.random.default_rng(9_000 + seed))
    return float(np.mean(train(RECIPE, Xo, yo).predict(X3) == y3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--performance-ert", type=float, default=30_000)
    parser.add_argument("--min-improvement", type=float, default=0.01)
    args = parser.parse_args()
    results = {}
    scenarios = (("no_retraining", 0, False), ("labels_at_once", 0, True), ("labels_200_late", 200, True))
    for name, delay, retrain in scenarios:
        runs = [run(s, delay, retrain, args.performance_ert, args.min_improvement) for s in range(args.seeds)]
        results[name] = {
            "mean_accuracy_after_drift": round(statistics.mean(r["accuracy_after"] for r in runs), 4),
            "min_accuracy_after_drift": round(min(r["accuracy_after"] for r in runs), 4),
            "max_retrainings_per_run": max(len(r["retrainings"]) for r in runs),
            "mean_retraining_at": round(
                statistics.mean(r["retrainings"][0]["at_sample"] - BEFORE for r in runs if r["retrainings"]), 1
            ) if retrain else None,
            "runs": runs,
        }  # fmt: skip
    oracle = statistics.mean(map(oracle_accuracy, range(args.seeds)))
    results["oracle"] = {"mean_accuracy_after_drift": round(oracle, 4)}
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in results.items()}, indent=2))
    (HERE / "results" / "retraining.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
