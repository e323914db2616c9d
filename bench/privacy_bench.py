"""Retraining that keeps data on its node, measured on SEA 0 -> 3 (10% label noise, 10 seeds):
accuracy after the change for a STRICT deployment retrained on its node, the same with
differential privacy at two epsilons, an OPEN deployment retrained by the Monitor, and no
retraining, in one run on the same streams.

Each variant runs the mesh's own parts on the stream, labels arriving with their predictions in
chunks of 10: the Monitor's performance detector and retraining schedule (monitor_svc), and the
round a training job runs (mlaas/retraining/rounds.py: split, fit, paired test), with ONNX models
serving. What differs is what the mesh does differently:
- OPEN: the Monitor gets each label; a round fits the recipe, and again on all labels if it won.
- STRICT: the node sends counts of errors per window of 32 labels (spread evenly over the window,
  as the Monitor does); the round is the same, run on the node.
- STRICT + DP: the round fits with diffprivlib at the epsilon (mlaas/retraining/private_fit.py) and
  rolls out the challenger it judged; a round that would take the privacy ledger past 5 epsilons
  is refused.

The recipe is a standard scaler and logistic regression (a private recipe needs estimators with
private counterparts); the champion is fitted on 2,000 rows of concept 0, which are also the
reference rows that bound the private fits.

    .venv/bin/python bench/privacy_bench.py [--seeds 10]   # ~4 minutes

Reported (mean over seeds): accuracy over the 1,000 rows from 1,000 to 2,000 after the change and
over all 6,000 after it, rounds started and rolled out per run, the epsilon spent.

Then federated retraining (mlaas/retraining/federated.py) on three sites, each holding a third of
the labels after the change: the sites' parameters averaged (Flower's FedAvg, as the Monitor
does it), beside each site fitted on its own third alone, a central oracle fitted on all of them
(what no STRICT deployment may do), and no retraining; accuracy on 3,000 fresh rows of the new
concept, for 150 and 1,000 labels per site.

Writes bench/results/privacy.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

from mlaas.demos.scenarios import sea
from mlaas.export import sklearn_to_onnx
from mlaas.recipes import build_pipeline, recipe_from_steps
from mlaas.retraining.federated import assemble, average, local_parameters
from mlaas.retraining.private_fit import fit_private
from mlaas.retraining.rounds import run_round
from mlaas.v1 import types_pb2
from monitor_svc.deployments import spread_errors
from monitor_svc.detectors.error_rate import ErrorRateDetector
from monitor_svc.monitoring import DEFAULT_CHALLENGER_CONFIDENCE, default_policy
from monitor_svc.retraining import RetrainSchedule

HERE = Path(__file__).resolve().parent
BEFORE, AFTER, CHUNK, NODE_WINDOW = 2_000, 6_000, 10, 32
RECIPE = recipe_from_steps([
    ("sklearn.preprocessing.StandardScaler", {}), ("sklearn.linear_model.LogisticRegression", {"max_iter": 1000}),
])  # fmt: skip
BUDGET_ROUNDS = 5  # the ledger's budget, in rounds' epsilons


@dataclass(frozen=True)
class Variant:
    name: str
    retrain: bool = True
    counts: bool = False  # the Monitor sees windows of counts (STRICT), not each label (OPEN)
    epsilon: float = 0.0


VARIANTS = (
    Variant("no retraining", retrain=False),
    Variant("OPEN, retrained by the Monitor"),
    Variant("STRICT, retrained on its node", counts=True),
    Variant("STRICT + DP, epsilon 4", counts=True, epsilon=4.0),
    Variant("STRICT + DP, epsilon 1", counts=True, epsilon=1.0),
)


class Served:
    """An ONNX model as a runtime serves it: one session, its first output."""

    def __init__(self, model: bytes):
        self._session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: rows.astype(np.float32)})[0].reshape(-1)


def serve(X: np.ndarray, y: np.ndarray, champion: bytes, reference: np.ndarray, variant: Variant) -> dict:
    policy = default_policy()
    detector = ErrorRateDetector(policy.performance_expected_run_length)
    schedule = RetrainSchedule.for_policy(policy)
    model, version_start, node_window = Served(champion), 0, []
    predictions = np.zeros(y.size, dtype=y.dtype)
    rounds, spent = [], 0.0

    def fit(X_fit: np.ndarray, y_fit: np.ndarray, _: str) -> bytes:
        if variant.epsilon:
            fitted, _ = fit_private(RECIPE, X_fit, y_fit, reference, variant.epsilon)
        else:
            fitted = build_pipeline(RECIPE).fit(X_fit, y_fit)
        return sklearn_to_onnx(fitted, X_fit[:1])

    for start in range(0, y.size, CHUNK):
        stop = min(start + CHUNK, y.size)
        predictions[start:stop] = model(X[start:stop])
        errors = (predictions[start:stop] != y[start:stop]).astype(float)
        if variant.counts:  # the node counts windows of 32 labels and sends their errors
            node_window += errors.tolist()
            whole = len(node_window) // NODE_WINDOW * NODE_WINDOW
            sent = [spread_errors(int(sum(node_window[i : i + NODE_WINDOW])), NODE_WINDOW)
                    for i in range(0, whole, NODE_WINDOW)]  # fmt: skip
            errors, node_window = (np.concatenate(sent) if sent else np.zeros(0)), node_window[whole:]
        for alarm in detector.update(errors):
            schedule.on_alarm(version_start + max(alarm.sample - alarm.window, 0), version_start + detector.samples)
        seen = version_start + detector.samples
        due = schedule.due(seen) if variant.retrain else None
        if due is None:
            continue
        if variant.epsilon and spent + variant.epsilon > BUDGET_ROUNDS * variant.epsilon:
            schedule.finished(False, seen)  # the ledger refuses it
            continue
        spent += variant.epsilon
        # The round's data: every label since the change, wherever it is kept (Monitor or node).
        outcome = run_round(
            types_pb2.TASK_CLASSIFICATION, X[due.since : stop], y[due.since : stop], due.unseen_after - due.since,
            model, fit, DEFAULT_CHALLENGER_CONFIDENCE, due.follow_up, refit_on_all=not variant.epsilon,
        )  # fmt: skip
        rolled_out = outcome.verdict.roll_out
        rounds.append({"at_row": stop, "labels": stop - due.since, "rolled_out": rolled_out})
        if rolled_out:
            model, version_start, node_window = Served(outcome.model), stop, []
            detector = ErrorRateDetector(policy.performance_expected_run_length)
        schedule.finished(rolled_out, seen)
    right = predictions == y
    return {
        "second_1000": float(np.mean(right[BEFORE + 1_000 : BEFORE + 2_000])),
        "all_after": float(np.mean(right[BEFORE:])),
        "rounds": len(rounds),
        "rolled_out": sum(r["rolled_out"] for r in rounds),
        "epsilon_spent": spent,
        "log": rounds,
    }


def federated(seed: int, per_site: int, sites: int = 3) -> dict[str, float]:
    """Accuracy on fresh rows of the new concept: no retraining, each site alone (mean over
    sites), the sites' averaged parameters, and a central fit on all their labels."""
    rng = np.random.default_rng(1_000 + seed)
    X_train, y_train = sea(2_000, 0, rng)
    X, y = sea(per_site * sites, 3, rng)
    X_test, y_test = sea(3_000, 3, rng)
    shares = [(X[i::sites], y[i::sites]) for i in range(sites)]

    def accuracy(model) -> float:
        return float(np.mean(model.predict(X_test) == y_test))

    parameters = [(local_parameters(RECIPE, Xs, ys, X_train), len(ys)) for Xs, ys in shares]
    return {
        "no retraining": accuracy(build_pipeline(RECIPE).fit(X_train, y_train)),
        "each site alone": float(np.mean([accuracy(build_pipeline(RECIPE).fit(Xs, ys)) for Xs, ys in shares])),
        "federated (FedAvg)": accuracy(assemble(RECIPE, X_train, average(RECIPE, parameters))),
        "central oracle": accuracy(build_pipeline(RECIPE).fit(X, y)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {v.name: [] for v in VARIANTS}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        X_train, y_train = sea(2_000, 0, rng)
        champion = sklearn_to_onnx(build_pipeline(RECIPE).fit(X_train, y_train), X_train[:1])
        before, after = sea(BEFORE, 0, rng), sea(AFTER, 3, rng)
        X, y = np.vstack([before[0], after[0]]), np.concatenate([before[1], after[1]])
        for variant in VARIANTS:
            runs[variant.name].append(serve(X, y, champion, X_train, variant))
        print(f"seed {seed} done", flush=True)
    summary = {
        name: {
            "second_1000": round(statistics.mean(r["second_1000"] for r in found), 4),
            "all_after": round(statistics.mean(r["all_after"] for r in found), 4),
            "rounds_per_run": statistics.mean(r["rounds"] for r in found),
            "rolled_out_per_run": statistics.mean(r["rolled_out"] for r in found),
            "epsilon_spent": statistics.mean(r["epsilon_spent"] for r in found),
        }
        for name, found in runs.items()
    }
    federation = {
        per_site: {name: round(statistics.mean(run[name] for run in found), 4) for name in found[0]}
        for per_site in (150, 1_000)
        for found in [[federated(seed, per_site) for seed in range(args.seeds)]]
    }
    print(json.dumps({"retraining": summary, "federated, accuracy by labels per site": federation}, indent=1))
    (HERE / "results" / "privacy.json").write_text(
        json.dumps({"summary": summary, "federated": federation, "runs": runs}) + "\n"
    )


if __name__ == "__main__":
    main()
