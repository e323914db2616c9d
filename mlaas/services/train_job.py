"""The training job program (`python -m mlaas.services.train_job`), run by a scheduler backend with the
model's train resources: fits the model's registered recipe (scikit-learn estimators from the
allowlist, never user code) on a labeled dataset and writes the fitted model as ONNX.

    python -m mlaas.services.train_job --registry ADDR --model NAME:VERSION --input DATA.npz --output MODEL.onnx

DATA.npz holds X (rows x features) and y. The output is written atomically; the exit code says
whether it worked (the scheduler reports the last log lines otherwise).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from mlaas.client import RegistryClient
from mlaas.export import sklearn_to_onnx
from mlaas.recipes import build_pipeline
from mlaas.services.private_files import private_by_default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlaas.services.train_job", description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--model", required=True, help="NAME:VERSION whose recipe is fitted")
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args(argv)
    private_by_default()  # the model it writes is its owner's
    with RegistryClient(args.registry, os.environ.get("MLAAS_TOKEN") or None) as registry:
        recipe = registry.get(args.model).description.recipe
    if not recipe.steps:
        print(f"{args.model} has no training recipe", file=sys.stderr)
        return 2
    with np.load(args.input, allow_pickle=False) as data:
        if not {"X", "y"} <= set(data.files):
            print(f"{args.input} must hold the arrays X and y; it has {sorted(data.files)}", file=sys.stderr)
            return 2
        X, y = data["X"].astype(np.float32), data["y"]
    model = build_pipeline(recipe).fit(X, y)
    partial = args.output.with_name(args.output.name + ".partial")
    partial.write_bytes(sklearn_to_onnx(model, X[:1]))
    partial.replace(args.output)
    print(f"fitted {args.model}'s recipe on {len(X)} rows -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
