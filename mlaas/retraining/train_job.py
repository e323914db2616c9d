"""The training job program (`python -m mlaas.retraining.train_job`), run by a scheduler backend with the
model's train resources. Two kinds:

- a fit: the model's registered recipe (scikit-learn estimators from the allowlist, never user
  code) fitted on a labeled dataset the caller gave, written as ONNX;

      python -m mlaas.retraining.train_job --registry ADDR --model NAME:VERSION --input DATA.npz --output MODEL.onnx

  DATA.npz holds X (rows x features) and y; with an integer array `fold` too (per row: -1, or a
  fold below MAX_FOLDS), it also writes predictions.npy beside the model: the rows with a fold,
  each predicted by fits that never learnt its label (a cross-validated round: rounds.cross_fit,
  out of bag for a forest, else the recipe fitted on the other folds).
- a round on a STRICT deployment's node: the plan (a NodeRound as JSON) says which of the labels
  the node keeps to learn from; the job fits the recipe on most of them (with differential
  privacy if the plan gives an epsilon), judges it against the version serving now (NAME:VERSION)
  on the held-out rest, and writes its verdict and counts (a RoundResult as JSON) and, if the
  challenger won, the model. A federated round's first step writes the fitted parameters
  instead; its second judges the candidate (candidate.onnx beside the plan) and writes counts.
  Nothing else leaves the node: no row, prediction or label.

      python -m mlaas.retraining.train_job --registry ADDR --model NAME:VERSION --round PLAN.json
          --node-store STORE.sqlite3 --result RESULT.json --output MODEL.onnx

Outputs are written atomically; the exit code says whether it worked (the scheduler reports the
last log lines otherwise).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import traceback
from pathlib import Path

import numpy as np
from google.protobuf import json_format

from mlaas.client import RegistryClient
from mlaas.errors import MlaasError
from mlaas.export import sklearn_to_onnx
from mlaas.recipes import build_pipeline
from mlaas.retraining.federated import local_parameters
from mlaas.retraining.outcomes import targets, usable
from mlaas.retraining.private_fit import fit_private
from mlaas.retraining.round_files import CANDIDATE, FAILURE_NOTE, PARAMETERS, PREDICTIONS, STAGES
from mlaas.retraining.rounds import (
    cross_fit,
    cross_validated_round,
    first_output,
    held_out_round,
    holdout_split,
    judge,
    round_result,
)
from mlaas.retraining.stages import StageClock
from mlaas.services.label_store import LabelStore
from mlaas.services.private_files import private_by_default
from mlaas.v1 import registry_pb2, scheduler_pb2, types_pb2

MAX_FOLDS = 64  # of a cross-validated fit: each fold is one more fit


def write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def fit_given(registry: RegistryClient, model: str, data_path: Path, output: Path, clock: StageClock) -> int:
    recipe = registry.get(model).description.recipe
    if not recipe.steps:
        print(f"{model} has no training recipe", file=sys.stderr)
        return 2
    with np.load(data_path, allow_pickle=False) as data:
        if not {"X", "y"} <= set(data.files):
            print(f"{data_path} must hold the arrays X and y; it has {sorted(data.files)}", file=sys.stderr)
            return 2
        X, y = data["X"].astype(np.float32), data["y"]
        fold = data["fold"] if "fold" in data.files else None
    if X.ndim != 2 or y.shape != (len(X),):
        print(f"{data_path}: X must be rows x features and y one label per row; X is {X.shape}, y {y.shape}",
              file=sys.stderr)  # fmt: skip
        return 2
    if fold is not None and (problem := fold_problem(fold, len(y))):
        print(f"{data_path}: {problem}", file=sys.stderr)
        return 2
    exported, predictions = fit_recipe(recipe, X, y, fold, clock)
    if predictions is not None:
        saved = io.BytesIO()
        np.save(saved, predictions, allow_pickle=False)
        write_atomically(output.with_name(PREDICTIONS), saved.getvalue())
    write_atomically(output, exported)
    folds = "" if fold is None else ", and each row with a fold predicted by fits without it"
    print(f"fitted {model}'s recipe on {len(X)} rows{folds} -> {output}")
    return 0


def fit_recipe(
    recipe: types_pb2.TrainingRecipe, X: np.ndarray, y: np.ndarray, fold: np.ndarray | None, clock: StageClock,
    step: str = "",
) -> tuple[bytes, np.ndarray | None]:  # fmt: skip
    """The recipe fitted on all rows (ONNX), and with `fold` the rows with a fold predicted by fits
    that never learnt them (`cross_fit`); the clock marks the `step`'s fit and export."""
    fit = lambda X, y: build_pipeline(recipe).fit(X, y)  # noqa: E731
    fitted, predictions = (fit(X, y), None) if fold is None else cross_fit(fit, X, y, fold)
    return exported(fitted, X, clock, step), predictions


def exported(fitted, X: np.ndarray, clock: StageClock, step: str) -> bytes:
    """A fitted model as ONNX; the clock marks the `step`'s fit (done) and export."""
    clock.mark(f"{step} fitted".lstrip())
    model = sklearn_to_onnx(fitted, X[:1])
    clock.mark(f"{step} exported".lstrip())
    return model


def fold_problem(fold: np.ndarray, rows: int) -> str:
    """What is wrong with a fit's `fold` array, or ''."""
    if fold.shape != (rows,) or fold.dtype.kind not in "iu":
        return f"fold must be one integer per row ({rows}); it is {fold.dtype} of shape {fold.shape}"
    if fold.size and (fold.min() < -1 or fold.max() >= MAX_FOLDS):
        return f"each fold must be -1 or from 0 to {MAX_FOLDS - 1}"
    if not np.any(fold >= 0):
        return "no row has a fold: nothing to predict"
    if len(np.unique(fold[fold >= 0])) == 1 and np.all(fold >= 0):
        return "every row is in one fold: its fit would learn from no row"
    return ""


def round_on_node(
    registry: RegistryClient, model: str, plan_path: Path, store_path: Path, result: Path, output: Path,
    clock: StageClock,
) -> int:  # fmt: skip
    """A round (or one step of a federated round) on the labels this node keeps; only the
    RoundResult, and the model or the parameters, are written for the mesh."""
    plan = json_format.Parse(plan_path.read_text(), scheduler_pb2.NodeRound())
    if not store_path.is_file():
        return refuse(result, f"deployment {plan.deployment_id} keeps no labels on this node")
    description = registry.get(model).description
    work = output.parent
    champion = work / "champion.onnx"
    registry.download(model, champion)
    store = LabelStore(store_path)
    try:
        labeled = store.labeled_since(plan.deployment_id, plan.since_label)
    finally:
        store.close()
    if plan.until_label:  # a federated round's steps use the same labels
        labeled = [x for x in labeled if x.number <= plan.until_label]
    classification = description.task == types_pb2.TASK_CLASSIFICATION
    labeled = usable(labeled, classification)
    if len(labeled) < 2:
        return refuse(result, f"{len(labeled)} labels after {plan.since_label} on this node: too few to retrain")
    X = np.vstack([x.inputs for x in labeled]).astype(np.float32)
    y = targets([x.label for x in labeled], classification)
    unseen_from = next((i for i, x in enumerate(labeled) if x.number > plan.unseen_after), len(labeled))
    if plan.parameters_only:
        summary = federated_fit(description, X, y, unseen_from, _reference(registry, model, work), work)
    elif plan.judge_candidate:
        summary = federated_judge(description, X, y, unseen_from, champion, plan_path.with_name(CANDIDATE))
    else:
        summary = whole_round(description, plan, X, y, unseen_from, champion, registry, model, output, clock)
    summary.until_label = labeled[-1].number
    write_atomically(result, json_format.MessageToJson(summary).encode())
    print(f"round on {len(labeled)} labels of {plan.deployment_id}: {summary.reason or 'parameters written'}")
    return 0


def refuse(result: Path, why: str) -> int:
    """A round that cannot run: why, for the mesh (`why` quotes no data of the node's)."""
    print(why, file=sys.stderr)
    write_atomically(result.with_name(FAILURE_NOTE), why.encode())
    return 2


def _reference(registry: RegistryClient, model: str, work: Path) -> np.ndarray:
    """The model's registered reference rows (the owner's own): what bounds a private fit and
    fits a federation's shared steps."""
    path = work / "reference.npy"
    registry.download(model, path, registry_pb2.ARTIFACT_KIND_REFERENCE_DATA)
    reference = np.load(path, allow_pickle=False).astype(np.float32)
    return reference.reshape(reference.shape[0], -1)


def whole_round(
    description, plan, X, y, unseen_from, champion: Path, registry, model: str, output: Path, clock: StageClock
):
    """Fit, judge and, if better, the model to roll out (this node's deployment alone): judged by
    cross-validation, or with differential privacy on a held-out part (each fit spends epsilon)."""
    serving = lambda rows: first_output(champion, rows)  # noqa: E731
    spent = []
    if plan.epsilon:
        reference = _reference(registry, model, output.parent)

        def fit(X_fit: np.ndarray, y_fit: np.ndarray) -> bytes:
            fitted, epsilon = fit_private(description.recipe, X_fit, y_fit, reference, plan.epsilon)
            spent.append(epsilon)
            return exported(fitted, X_fit, clock, "challenger")

        outcome = held_out_round(description.task, X, y, unseen_from, serving, fit, plan.confidence, plan.follow_up)
    else:
        outcome = cross_validated_round(
            description.task, X, y, unseen_from, serving,
            lambda X, y, fold: fit_recipe(description.recipe, X, y, fold, clock, "challenger"),
            plan.confidence, plan.follow_up,
        )  # fmt: skip
    if outcome.model is not None:
        write_atomically(output, outcome.model)
    return round_result(
        description.task, outcome.verdict, training_samples=outcome.training_samples,
        held_out_samples=outcome.held_out_samples, epsilon_spent=sum(spent),
    )  # fmt: skip


def federated_fit(description, X, y, unseen_from: int, reference: np.ndarray, work: Path):
    """A federated round's first step: this site's parameters, fitted on its training part."""
    fit_rows, held = holdout_split(len(y), seed=len(y), unseen_from=unseen_from)
    parameters = local_parameters(description.recipe, X[fit_rows], y[fit_rows], reference)
    partial = work / f"{PARAMETERS}.partial.npz"
    # mypy matches the arrays against savez's allow_pickle (bool) too, which no key here names
    np.savez(partial, **parameters)  # type: ignore[arg-type]
    partial.replace(work / PARAMETERS)
    return scheduler_pb2.RoundResult(training_samples=len(fit_rows), held_out_samples=len(held))


def federated_judge(description, X, y, unseen_from: int, champion: Path, candidate: Path):
    """A federated round's second step: the candidate against the champion on this site's held-out
    part (the same split as the first step's), as counts the federation pools."""
    _, held = holdout_split(len(y), seed=len(y), unseen_from=unseen_from)
    verdict = judge(
        description.task, y[held], first_output(champion, X[held]).astype(y.dtype),
        first_output(candidate, X[held]).astype(y.dtype), confidence=0.5,
    )  # fmt: skip
    return round_result(description.task, verdict, held_out_samples=len(held))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlaas.retraining.train_job", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("--registry", required=True)
    parser.add_argument("--model", required=True, help="NAME:VERSION whose recipe is fitted")
    parser.add_argument("--output", required=True, type=Path)
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--input", type=Path, help="a fit: the labeled rows (.npz with X and y)")
    given.add_argument("--round", type=Path, help="a round on a node: its plan (NodeRound as JSON)")
    parser.add_argument("--node-store", type=Path, help="a round: the node's store of predictions and labels")
    parser.add_argument("--result", type=Path, help="a round: where its RoundResult goes (JSON)")
    args = parser.parse_args(argv)
    if args.round and not (args.node_store and args.result):
        parser.error("--round needs --node-store and --result")
    private_by_default()  # the model it writes is its owner's
    clock = StageClock()
    clock.mark("ready")
    try:
        return run(args, clock)
    finally:
        clock.write(args.output.with_name(STAGES))


def run(args: argparse.Namespace, clock: StageClock) -> int:
    with RegistryClient(args.registry, os.environ.get("MLAAS_TOKEN") or None) as registry:
        if args.input:
            return fit_given(registry, args.model, args.input, args.output, clock)
        try:
            return round_on_node(registry, args.model, args.round, args.node_store, args.result, args.output, clock)
        except MlaasError as err:  # the mesh's own (the registry's refusals): no data of the node's
            traceback.print_exc()
            return refuse(args.result, f"the round failed: {err}")
        except Exception as err:  # its message may quote the node's data: it stays in the log, here
            traceback.print_exc()
            return refuse(args.result, f"the round failed with {type(err).__name__}; its log stays on this node")


if __name__ == "__main__":
    sys.exit(main())
