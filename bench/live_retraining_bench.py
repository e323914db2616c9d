"""The retraining loop on the running mesh, driven as an application drives it: `mlaas up` (local
backend, runtime processes), a 30-tree forest registered with its recipe and deployed, the SDK's
streaming client sending one row per request at a fixed rate, and the labels of every 10 answers
reported to the Monitor (default policy). The streams are river's generators (bench/anchors/
river_streams.py): abrupt changes of the labelling function (STAGGER, Sine, Agrawal, Mixed, SEA,
Hyperplane) and a gradual one (Sine 0 to Sine 2 over 2,000 rows) after 2,000 rows, and two
controls (stationary, covariate-only).

In the same run, on the same rows: no retraining (the champion), river's Adaptive Random Forest
and Hoeffding Adaptive Tree taught the champion's training rows and then learning each label as it
arrives (every 10 answers, as the mesh gets them), and an oracle (the recipe fitted on the new
concept alone).

    .venv/bin/python bench/live_retraining_bench.py [--seeds 3] [--rates 100 400] [--streams sea ...]
        [--backend docker] [--trainers warm cold] [--out FILE]

`--backend docker` runs the replicas and training jobs as containers of `mlaas:local` (`make
docker-image`); `--trainers warm cold` runs every stream with warm training (the default) and
again with every job started cold, in the same run, for the ratio.

Reported per stream and rate (medians over seeds): rows served from the change until the first
new version served, the seconds from the first changed row's answer to the first alarm, the
loop's own time from the round being due (its labels were there) to the new version serving and
from the alarm to serving (each retraining's recorded stages), per run how long the
application's 10-label calls took (median, p99) and how long its loop over the answers took
beside the stream's own length (a loop that falls behind reports its labels late), the
retrainings rolled out and rejected per run, failed requests, and the accuracy served in the
first and second 1,000 rows after the change (gradual: after it completed) beside no retraining,
ARF, HAT and the oracle. Writes bench/results/live-retraining.json (live-retraining-docker.json
for the Docker backend).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from venvs import ensure_venv

from mlaas.client import MonitorClient, RegistryClient, SchedulerClient
from mlaas.demos.scenarios import paced
from mlaas.export import register_sklearn
from mlaas.inference_client import DeploymentInference
from mlaas.retraining.stages import durations
from mlaas.v1 import monitor_pb2

HERE = Path(__file__).resolve().parent
BEFORE, AFTER, WIDTH, CHUNK = 2_000, 2_500, 2_000, 10
ABRUPT = ("stagger", "sine", "agrawal", "mixed", "sea", "hyperplane")
GRADUAL, CONTROLS = ("sine_gradual",), ("stationary", "covariate_only")
M = monitor_pb2
DOCKER_IMAGE = "mlaas:local"


def forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=30, random_state=0)


def river(command: list[str]) -> str:
    bin_dir = ensure_venv("river", ["river"])
    if bin_dir is None:
        raise SystemExit("river could not be installed: the streams and online learners come from it")
    found = subprocess.run([str(bin_dir / "python"), "river_streams.py", *command], cwd=HERE / "anchors",
                           check=True, capture_output=True, text=True)  # fmt: skip
    return found.stdout


class Mesh:
    """`mlaas up` in a data dir of its own, on free ports; stopped with SIGINT."""

    def __init__(self, root: Path, backend: str = "local", warm: bool = True, warm_runtimes: bool = True):
        command = [
            sys.executable, "-m", "mlaas.cli", "up", "--json", "--data-dir", str(root),
            "--registry-port", "0", "--registry-metrics-port", "-1", "--scheduler-port", "0",
            "--scheduler-metrics-port", "-1", "--monitor-port", "0", "--monitor-metrics-port", "-1",
        ]  # fmt: skip
        env = {**os.environ, "MLAAS_BACKEND": backend, "MLAAS_WARM_TRAINERS": str(warm).lower(),
               "MLAAS_WARM_RUNTIMES": str(warm_runtimes).lower()}  # fmt: skip
        if backend == "docker":
            env["MLAAS_RUNTIME_IMAGE"] = DOCKER_IMAGE
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        endpoints = json.loads(self._process.stdout.readline())
        self.registry, self.scheduler, self.monitor = (
            endpoints["registry"],
            endpoints["scheduler"],
            endpoints["monitor"],
        )

    def stop(self) -> None:
        self._process.send_signal(signal.SIGINT)
        self._process.wait(120)


def serve(mesh: Mesh, name: str, X: np.ndarray, y: np.ndarray, train: tuple, rate: float) -> dict:
    """One stream through the mesh: per row, the version that answered and whether it was
    right; the retrainings with their stages."""
    champion = forest().fit(*train)
    with RegistryClient(mesh.registry) as registry:
        register_sklearn(registry, champion, name, train[0].astype(np.float32), reference_data=train[0][:1000])
    with SchedulerClient(mesh.scheduler) as scheduler, MonitorClient(mesh.monitor) as monitor:
        deployment = scheduler.wait_ready(scheduler.deploy(name).id)
        rows = paced(({"X": X[i : i + 1].astype(np.float32)} for i in range(len(X))), rate)

        versions, right, answered_at, failed, waiting, reporting = [], [], [], 0, [], []
        with DeploymentInference(scheduler, deployment.id) as runtime:
            for result in runtime.stream(rows, (f"r{i}" for i in range(len(X)))):
                i = int(result.request_id[1:])
                answered_at.append(time.time())
                if result.error:
                    failed += 1
                    versions.append(0)
                    right.append(False)
                else:
                    versions.append(int(result.model_version))
                    right.append(bool(result.outputs["label"][0] == y[i]))
                waiting.append((result.request_id, str(y[i])))
                if len(waiting) == CHUNK:
                    started = time.perf_counter()
                    monitor.report_labels(deployment.id, waiting)
                    reporting.append(time.perf_counter() - started)
                    waiting = []
        deadline = time.monotonic() + 60  # a round that started near the end goes on
        while any(r.state < M.RETRAINING_STATE_ROLLED_OUT for r in monitor.retrainings(deployment.id)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        retrainings = monitor.retrainings(deployment.id)
        scheduler.decommission(deployment.id)
    return {
        "versions": versions, "right": right, "answered_at": answered_at, "failed": failed, "retrainings": retrainings,
        "label_report_ms": [round(1000 * np.median(reporting), 2), round(1000 * np.percentile(reporting, 99), 2)],
    }  # fmt: skip


def stage_seconds(retraining: M.Retraining, first: str, last: str) -> float | None:
    """Seconds from stage `first` to stage `last` of a retraining (None if it has not both)."""
    at = {s.stage: s.at.ToNanoseconds() for s in retraining.stages}
    return (at[last] - at[first]) / 1e9 if first in at and last in at else None


def change_to_alarm(served: dict, settled: int) -> float | None:
    """Seconds from the answer to the first changed row to the first round's alarm."""
    alarms = [s.at.ToNanoseconds() / 1e9 for r in served["retrainings"] for s in r.stages if s.stage == "alarm"]
    return round(min(alarms) - served["answered_at"][settled], 3) if alarms else None


def accuracy(right, part: slice) -> float:
    """The share of rows in `part` answered right (`right`: one truth value per row)."""
    return float(np.mean(np.asarray(right, dtype=bool)[part]))


def median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 400.0])
    parser.add_argument("--streams", nargs="+", default=[*ABRUPT, *GRADUAL, *CONTROLS])
    parser.add_argument("--backend", choices=["local", "docker"], default="local")
    parser.add_argument("--trainers", nargs="+", choices=["warm", "cold"], default=["warm"])
    parser.add_argument("--out", type=Path, help="default: bench/results/live-retraining[-BACKEND].json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlaas-live-retraining-"))
    river(["streams", str(work / "streams.npz"), str(args.seeds)])
    data = np.load(work / "streams.npz")
    keys = [f"{name}_{seed}" for name in args.streams for seed in range(args.seeds)]
    rows = BEFORE + AFTER + WIDTH  # the gradual change completes WIDTH rows later
    online = json.loads(river(["online", str(work / "streams.npz"), str(rows), str(CHUNK), *keys]))
    results, summary = {}, {}
    for trainers in args.trainers:
        mesh = Mesh(work / f"mesh-{trainers}", args.backend, warm=trainers == "warm")
        try:
            run_streams(mesh, args, data, online, results, summary, "" if trainers == "warm" else "/cold")
        finally:
            mesh.stop()
    name = "live-retraining.json" if args.backend == "local" else f"live-retraining-{args.backend}.json"
    (args.out or HERE / "results" / name).write_text(json.dumps({"summary": summary, "runs": results}) + "\n")


def run_streams(mesh: Mesh, args, data, online: dict, results: dict, summary: dict, suffix: str) -> None:
    """Every stream at every rate through `mesh`; their runs and summaries under NAME@RATE+suffix."""
    for rate in args.rates:
        for name in args.streams:
            settled = BEFORE + (WIDTH if name in GRADUAL else 0)
            end = settled + AFTER
            runs = []
            for seed in range(args.seeds):
                key = f"{name}_{seed}"
                X, y = data[f"X_{key}"][:end], data[f"y_{key}"][:end]
                train = (data[f"train_X_{key}"], data[f"train_y_{key}"])
                served = serve(mesh, f"live-{name}-{seed}-{int(rate)}", X, y, train, rate)
                champion = forest().fit(*train)
                oracle = forest().fit(data[f"oracle_X_{key}"], data[f"oracle_y_{key}"])
                first, second = slice(settled, settled + 1_000), slice(settled + 1_000, settled + 2_000)
                new_version = next((i for i, v in enumerate(served["versions"]) if v > 1), None)
                rolled = [r for r in served["retrainings"] if r.state == M.RETRAINING_STATE_ROLLED_OUT]

                runs.append({
                    "rows_until_new_version": None if new_version is None else new_version - BEFORE,
                    "change_to_alarm_s": change_to_alarm(served, settled),
                    "label_report_ms": served["label_report_ms"],  # median, p99 of the 10-label calls
                    # the application's loop over the answers, beside the stream's own length
                    "loop_seconds": [round(served["answered_at"][-1] - served["answered_at"][0], 2), len(X) / rate],
                    "due_to_serving_s": [stage_seconds(r, "due", "serving") for r in rolled],
                    "alarm_to_serving_s": [stage_seconds(r, "alarm", "serving") for r in rolled],
                    "stages": [durations(r.stages) for r in rolled],
                    "rolled_out": len(rolled),
                    "rejected": sum(r.state == M.RETRAINING_STATE_REJECTED for r in served["retrainings"]),
                    "failed_requests": served["failed"],
                    **{f"{which}_{label}": accuracy(right, part)
                       for label, part in (("first_1000", first), ("second_1000", second))
                       for which, right in (
                           ("mesh", served["right"]), ("none", champion.predict(X) == y),
                           ("arf", online[key]["arf"]), ("hat", online[key]["hat"]),
                           ("oracle", oracle.predict(X) == y))},
                })  # fmt: skip
            label = f"{name}@{int(rate)}{suffix}"
            results[label] = runs
            summary[label] = {
                "rows_until_new_version": median([r["rows_until_new_version"] for r in runs]),
                "change_to_alarm_s": median([r["change_to_alarm_s"] for r in runs]),
                "due_to_serving_s": median([s for r in runs for s in r["due_to_serving_s"]]),
                "alarm_to_serving_s": median([s for r in runs for s in r["alarm_to_serving_s"]]),
                "rolled_out_per_run": statistics.mean(r["rolled_out"] for r in runs),
                "rejected_per_run": statistics.mean(r["rejected"] for r in runs),
                "failed_requests": sum(r["failed_requests"] for r in runs),
                **{field: round(statistics.mean(r[field] for r in runs), 3)
                   for field in runs[0] if field.endswith("_1000")},
            }  # fmt: skip
            print(json.dumps({label: summary[label]}), flush=True)


if __name__ == "__main__":
    main()
