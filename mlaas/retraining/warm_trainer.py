"""A warm trainer (`python -m mlaas.retraining.warm_trainer`): a long-lived process per node that has
imported the training job's libraries (scikit-learn, skl2onnx, ONNX Runtime, SciPy) and run one
small fit and export through them, and starts each training job as a forked child of itself, a
fork server (mlaas/services/fork_server.py says how a child is kept as separate as a cold one).
A job then begins where a cold one would be after seconds of imports and first-call set-up.

The child is the training job itself (mlaas.retraining.train_job.main with the request's
`argv`), with as many numeric-library threads as its environment's `OMP_NUM_THREADS`; the
scheduler watches its memory and deadline and stops it by its pid as it would a cold job's.

With `--one` (the Docker backend's warm job container, scheduler_svc/backends/docker_warm.py)
it runs one job, in this very process and container: it warms up, says `{"ready": true}`, waits
for one request (`argv`, `env`, `threads`; no log: the container's output is the job's) and exits
with the job's code, or after `--idle-seconds` with none (its scheduler may be gone).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys

# The libraries every job imports, once, here.
import numpy as np
from threadpoolctl import threadpool_limits

from mlaas.retraining import train_job
from mlaas.services import fork_server
from mlaas.v1 import types_pb2


def warm_up() -> None:
    """First calls that set things up in the libraries (lazy imports, converter registries,
    ONNX Runtime's session machinery), so that no job pays for them."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlaas.export import sklearn_to_onnx
    from mlaas.recipes import ALLOWED_ESTIMATORS
    from mlaas.retraining.rounds import first_output, judge

    for path in ALLOWED_ESTIMATORS:  # every module a recipe may name
        __import__(path.rsplit(".", 1)[0])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    for model, target in (
        (make_pipeline(StandardScaler(), LogisticRegression()), y),
        (RandomForestClassifier(n_estimators=2), y),
        (make_pipeline(StandardScaler(), Ridge()), X[:, 1]),
    ):
        first_output(sklearn_to_onnx(model.fit(X, target), X[:1]), X)
    judge(types_pb2.TASK_CLASSIFICATION, y, y, y, confidence=0.95)


def job_request(request: dict) -> tuple[list[str], dict[str, str], int]:
    """(argv, env, threads) of a request, checked."""
    argv, env = fork_server.checked_argv(request["argv"]), fork_server.checked_env(request["env"])
    return argv, env, max(1, int(request.get("threads", 1)))


def run_forked_job(argv: list[str]) -> int:
    """A forked job, with the threads its environment allows (the libraries are loaded already:
    they no longer read it)."""
    with threadpool_limits(limits=max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))):
        return train_job.main(argv)


def run_one(requests, idle_seconds: float) -> int:
    """The one job of a warm job container, once its request comes; its exit code."""
    if not select.select([requests], [], [], idle_seconds)[0]:
        print(f"no job came within {idle_seconds:g}s", flush=True)
        return 0
    line = requests.readline()
    if not line:  # taken down unused
        return 0
    argv, env, threads = job_request(json.loads(line))
    os.environ.update(env)  # the container's own environment, and the job's credential
    with threadpool_limits(limits=threads):
        return train_job.main(argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a warm trainer (see the module's docstring)")
    parser.add_argument("--one", action="store_true", help="run one job in this process, then exit")
    parser.add_argument("--idle-seconds", type=float, default=3600.0, help="--one: exit after this long with no job")
    args = parser.parse_args(argv)
    if args.one:
        warm_up()
        print(json.dumps({"ready": True}), flush=True)
        code = run_one(sys.stdin, args.idle_seconds)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # no interpreter teardown: the job's outputs are written and closed
    return fork_server.run(warm_up, run_forked_job, "warm trainer", "mlaas.retraining.train_job")


if __name__ == "__main__":
    sys.exit(main())
