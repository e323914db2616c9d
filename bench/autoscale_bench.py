"""Autoscaling on the running mesh: `mlaas up` (local backend, replicas of 1 CPU each on this
machine's 2), one 30-tree forest, and an application of N threads each calling the deployment
through the SDK (`DeploymentInference`, 512-row requests) in phases of 1, 2, 4, 8, 4, 2 and 1
callers, then none. The same ramp runs autoscaled (1 to 2 replicas, target 2 requests in flight
per replica, a 10 s scale-down window), fixed at 1 replica and fixed at 2; and autoscaled again
on a second mesh whose replicas start cold (MLAAS_WARM_RUNTIMES=false: each a new interpreter, as
before the warm runtime forked them), the baseline of the time to serve after a decision.

    .venv/bin/python bench/autoscale_bench.py [--phase-seconds 8] [--runtimes warm cold]

Reported per run: per phase the requests/s, p50 and p99 latency seen by the application and the
failed requests; the serving replica count whenever it changed; for the autoscaled runs each
decision of the autoscaler (from its event, seconds since the ramp began) and how long the
added replica took to serve after it; the replica-seconds each run held. Then on each mesh the
cold starts (`--cold-trials`, medians): a cold Deploy to its first answer, and the first answer
from a deployment scaled to zero through the SDK and through the activator for an unmodified
tritonclient, each beside that mesh's cold Deploy as a ratio. `--only-cold` measures those
alone. Writes bench/results/autoscale.json (with --only-cold, only its cold starts are new).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from live_retraining_bench import Mesh
from sklearn.ensemble import RandomForestClassifier

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.export import register_sklearn
from mlaas.inference_client import DeploymentInference
from mlaas.v1 import scheduler_pb2, types_pb2

HERE = Path(__file__).resolve().parent
PHASES = (1, 2, 4, 8, 4, 2, 1)
ROWS = 512
ONE_CPU = types_pb2.Resources(cpu_millicores=1000, memory_bytes=512 * 2**20)
WINDOW = 10.0  # the autoscaled runs' scale-down window, s
AUTOSCALED = scheduler_pb2.AutoscalingPolicy(
    min_replicas=1, max_replicas=2, target_inflight=2.0, scale_down_window_seconds=WINDOW
)
RUNTIMES = {"warm": "", "cold": ", cold runtimes"}  # how replicas start -> the runs' name suffix


class Replicas(threading.Thread):
    """Samples the deployment's serving replicas every 0.2 s."""

    def __init__(self, scheduler: SchedulerClient, deployment_id: str, started: float):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []
        self._scheduler, self._id, self._since = scheduler, deployment_id, started
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            deployment = self._scheduler.get(self._id)
            self.samples.append((time.monotonic() - self._since, len(deployment.endpoints)))


def ramp(scheduler: SchedulerClient, deployment_id: str, rows: np.ndarray, phase_seconds: float, tail: float) -> dict:
    """The phases of callers, then `tail` seconds of none; what the application saw."""
    started, began_at = time.monotonic(), time.time()
    replicas = Replicas(scheduler, deployment_id, started)
    replicas.start()
    calls: list[tuple[int, float, float]] = []  # (phase, latency s, end) of answered requests
    failures: list[str] = []
    callers: list[tuple[threading.Thread, threading.Event]] = []

    def caller(phase: list[int], stop: threading.Event) -> None:
        with DeploymentInference(scheduler, deployment_id) as runtime:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    runtime.infer({"X": rows})
                except Exception as err:  # every failure counts
                    failures.append(repr(err))
                    continue
                calls.append((phase[0], time.monotonic() - sent, time.monotonic() - started))

    current = [0]
    for index, count in enumerate(PHASES):
        current[0] = index
        while len(callers) < count:
            stop = threading.Event()
            thread = threading.Thread(target=caller, args=(current, stop), daemon=True)
            thread.start()
            callers.append((thread, stop))
        while len(callers) > count:
            thread, stop = callers.pop()
            stop.set()
            thread.join()
        time.sleep(phase_seconds)
    for thread, stop in callers:
        stop.set()
        thread.join()
    load_ended = time.monotonic() - started
    time.sleep(tail)
    replicas.stop.set()
    replicas.join()
    phases = []
    for index, count in enumerate(PHASES):
        latencies = sorted(latency for phase, latency, _ in calls if phase == index)
        phases.append({
            "callers": count, "requests_per_s": round(len(latencies) / phase_seconds, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
        })  # fmt: skip
    samples = replicas.samples
    changes = [(round(t, 1), n) for i, (t, n) in enumerate(samples) if i == 0 or samples[i - 1][1] != n]
    return {
        "phase_starts_s": [round(i * phase_seconds, 1) for i in range(len(PHASES))],
        "load_ended_s": round(load_ended, 1),
        "phases": phases, "failed": len(failures), "failures": failures[:5], "serving_replicas_changes": changes,
        "replica_seconds": round(sum(n * 0.2 for _, n in samples), 1), "began_at": began_at,
    }  # fmt: skip


def decisions(scheduler: SchedulerClient, deployment_id: str, began_at: float) -> list[dict]:
    """The autoscaler's decisions from the deployment's events (its history, read once it is
    CACHED), each with when the deployment served again after it."""
    events = []
    for update in scheduler.watch(deployment_id):
        events.append(update.event)
        if update.event.state == scheduler_pb2.DEPLOYMENT_STATE_CACHED:
            break
    found = []
    for index, event in enumerate(events):
        if event.detail.startswith("autoscaling from"):
            decided = event.time.ToNanoseconds() / 1e9 - began_at
            ready = next((e for e in events[index + 1 :] if e.state == scheduler_pb2.DEPLOYMENT_STATE_READY), None)
            serving = None if ready is None else ready.time.ToNanoseconds() / 1e9 - began_at
            found.append({
                "decided_at_s": round(decided, 1), "serving_at_s": None if serving is None else round(serving, 1),
                "decision_to_serving_s": None if serving is None else round(serving - decided, 2),
                "detail": event.detail,
            })  # fmt: skip
    return found


def wait_at_zero(scheduler: SchedulerClient, deployment_id: str) -> None:
    while scheduler.get(deployment_id).replicas != 0:
        time.sleep(0.1)


def cold_starts(mesh: Mesh, forest, X: np.ndarray, trials: int) -> dict:
    """What the first answer costs: a cold Deploy (Deploy to the first answer through the SDK,
    each of its own model so none revives a cached one), and the first request to a deployment
    scaled to zero, through the SDK and through the activator for an unmodified tritonclient
    (process already started, timed from its call to its answer)."""
    rows = X[:8]
    with RegistryClient(mesh.registry) as registry:
        for index in range(trials):
            register_sklearn(registry, forest, f"cold-{index}", X, run_resources=ONE_CPU)
        register_sklearn(registry, forest, "to-zero", X, run_resources=ONE_CPU)
    deploys, sdk, triton = [], [], []
    with SchedulerClient(mesh.scheduler) as scheduler:
        for index in range(trials):
            began = time.monotonic()
            deployment = scheduler.wait_ready(scheduler.deploy(f"cold-{index}").id)
            with DeploymentInference(scheduler, deployment.id) as runtime:
                runtime.infer({"X": rows})
            deploys.append(time.monotonic() - began)
            scheduler.decommission(deployment.id)
        policy = scheduler_pb2.AutoscalingPolicy(
            min_replicas=0, max_replicas=1, target_inflight=2.0, scale_down_window_seconds=2.0
        )
        deployment = scheduler.wait_ready(scheduler.deploy("to-zero", autoscaling=policy).id)
        client = subprocess.Popen(
            [sys.executable, str(HERE / "clients" / "triton_first_answer.py"), deployment.activator_endpoint,
             deployment.id, "to-zero", str(X.shape[1])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert client.stdin is not None and client.stdout is not None
        assert client.stdout.readline().strip() == "ready"
        try:
            for _ in range(trials):
                wait_at_zero(scheduler, deployment.id)
                began = time.monotonic()
                with DeploymentInference(scheduler, deployment.id) as runtime:
                    runtime.infer({"X": rows})
                sdk.append(time.monotonic() - began)
                wait_at_zero(scheduler, deployment.id)
                client.stdin.write("go\n")
                client.stdin.flush()
                triton.append(float(client.stdout.readline()))
        finally:
            client.stdin.close()
            client.wait(60)
        scheduler.decommission(deployment.id)
    cold = statistics.median(deploys)

    def summary(seconds: list[float]) -> dict:
        median = statistics.median(seconds)
        return {"median_s": round(median, 3), "all_s": [round(s, 3) for s in seconds],
                "vs_cold_deploy": round(median / cold, 2)}  # fmt: skip

    return {"cold_deploy": summary(deploys), "from_zero_sdk": summary(sdk), "from_zero_tritonclient": summary(triton)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase-seconds", type=float, default=8.0)
    parser.add_argument("--cold-trials", type=int, default=5)
    parser.add_argument("--only-cold", action="store_true", help="measure the cold starts alone")
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.random((5_000, 3)).astype(np.float32)
    y = (X[:, 0] + rng.normal(0, 0.1, len(X)) > 0.5).astype(int)
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
    runs: dict[str, dict] = {}
    colds: dict[str, dict] = {}
    for kind in args.runtimes:
        mesh = Mesh(Path(tempfile.mkdtemp(prefix="mlaas-autoscale-")), warm=False, warm_runtimes=kind == "warm")
        try:
            if not args.only_cold:
                runs |= ramps(mesh, forest, X, args.phase_seconds, kind, baselines=kind == args.runtimes[0])
            colds[kind] = cold_starts(mesh, forest, X, args.cold_trials)
            print(json.dumps({"cold_starts": {kind: colds[kind]}}), flush=True)
        finally:
            mesh.stop()
    path = HERE / "results" / "autoscale.json"
    result = {"phase_seconds": args.phase_seconds, "rows_per_request": ROWS, "scale_down_window_seconds": WINDOW,
              "runs": runs}  # fmt: skip
    if args.only_cold and path.exists():  # the ramps of the last full run stay
        result = json.loads(path.read_text())
    path.write_text(json.dumps(result | {"cold_starts": colds}, indent=2) + "\n")


def ramps(mesh: Mesh, forest, X: np.ndarray, phase_seconds: float, kind: str, baselines: bool) -> dict:
    """The autoscaled ramp (named for how the mesh starts replicas), and with `baselines` the
    fixed ones."""
    plans = [("autoscaled", 1, AUTOSCALED)]
    if baselines:
        plans += [("fixed-1", 1, None), ("fixed-2", 2, None)]
    runs = {}
    with RegistryClient(mesh.registry) as registry:  # one model per run: no run revives another's
        for model, _, _ in plans:
            register_sklearn(registry, forest, model, X, reference_data=X[:1000], run_resources=ONE_CPU)
    with SchedulerClient(mesh.scheduler) as scheduler:
        for model, replicas, autoscaling in plans:
            began = time.monotonic()
            deployment = scheduler.wait_ready(scheduler.deploy(model, replicas, autoscaling=autoscaling).id)
            cold = round(time.monotonic() - began, 2)
            run = ramp(scheduler, deployment.id, X[:ROWS], phase_seconds, tail=WINDOW + 8 if autoscaling else 2)
            scheduler.decommission(deployment.id)
            run["autoscaler_decisions"] = decisions(scheduler, deployment.id, run.pop("began_at"))
            name = model + (RUNTIMES[kind] if autoscaling else "")
            runs[name] = {"cold_deploy_seconds": cold, **run}
            print(json.dumps({name: runs[name]}), flush=True)
    return runs


if __name__ == "__main__":
    main()
