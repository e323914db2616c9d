"""Chaos soak: an application streams inference through the SDK and reports a label for every
answer, for several minutes, while the mesh's parts are killed with SIGKILL one after another in
a random order: the registry, the scheduler, the monitor (restarted by `mlaas up`), one of the
deployment's two replicas (restarted by the scheduler) and Redis (revived from its append-only
file by `mlaas up`).

    .venv/bin/python bench/chaos_soak.py                   # 4 minutes, a fault every 15 s
    .venv/bin/python bench/chaos_soak.py --minutes 10 --interval 20 --seed 7

Reported: requests sent, answered, and failed after the SDK's retries (DeploymentInference
resends what a dead replica did not answer); labels reported, refused after the SDK's retries,
and lost (reported, but never matched to their prediction by the Monitor); for each kind of
fault, how many and the median time until the part serves again (gRPC health, or the
deployment back to two ready replicas, or Redis answering PING). Writes bench/results/soak.json.
Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import redis

from mlaas.client import MonitorClient, RegistryClient, SchedulerClient
from mlaas.errors import MlaasError
from mlaas.export import register_sklearn
from mlaas.inference_client import DeploymentInference
from mlaas.services.net import health
from mlaas.v1 import scheduler_pb2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FAULTS = ("registry", "scheduler", "monitor", "replica", "redis")
REPLICA = "inference_svc --model soak"
LABEL_EVERY = 10  # answers per ReportLabels call, as an application batching its labels


def start_mesh(data_dir: Path) -> tuple[subprocess.Popen, dict]:
    command = [
        sys.executable, "-m", "mlaas.cli", "up", "--json", "--data-dir", str(data_dir),
        "--registry-port", "0", "--registry-metrics-port", "-1", "--scheduler-port", "0",
        "--scheduler-metrics-port", "-1", "--monitor-port", "0", "--monitor-metrics-port", "-1",
    ]  # fmt: skip
    up = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    return up, json.loads(up.stdout.readline())


def find(up: subprocess.Popen, marker: str) -> list[psutil.Process]:
    """The mesh's processes whose command line holds `marker`, not their worker processes.
    Replicas are looked for among all processes: one started by a scheduler that was killed
    since runs on, in a session of its own, no longer below `mlaas up`."""
    found = []
    candidates = psutil.process_iter() if marker == REPLICA else psutil.Process(up.pid).children(recursive=True)
    for process in candidates:
        try:
            if marker in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return [p for p in found if not any(p.ppid() == q.pid for q in found)]


class Faults:
    def __init__(self, up, endpoints: dict, data_dir: Path, scheduler: SchedulerClient, deployment_id: str):
        self._up = up
        self._endpoints = endpoints
        self._scheduler = scheduler
        self._deployment_id = deployment_id
        password = (data_dir / "redis" / "password").read_text().strip()
        port = endpoints["redis"].split(":")[2].split("/")[0]
        self._redis = redis.Redis.from_url(f"redis://:{password}@127.0.0.1:{port}/0", socket_timeout=1)
        self.recovered: dict[str, list[float]] = {name: [] for name in FAULTS}

    def inject(self, kind: str, timeout: float = 120.0) -> float:
        """Kills the part with SIGKILL; returns the seconds until it serves again."""
        marker = {"registry": "registry_svc", "scheduler": "scheduler_svc", "monitor": "monitor_svc",
                  "replica": REPLICA, "redis": "redis-server"}[kind]  # fmt: skip
        victims = find(self._up, marker)
        victim = random.choice(victims) if kind == "replica" else victims[0]
        killed = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        deadline = killed + timeout
        while time.monotonic() < deadline:
            if self._serves(kind):
                seconds = time.monotonic() - killed
                self.recovered[kind].append(seconds)
                return seconds
            time.sleep(0.05)
        raise RuntimeError(f"{kind} did not recover within {timeout:.0f}s")

    def _serves(self, kind: str) -> bool:
        try:
            if kind in ("registry", "scheduler", "monitor"):
                return health(self._endpoints[kind], timeout=0.5) == "SERVING"
            if kind == "redis":
                return bool(self._redis.ping())
            deployment = self._scheduler.get(self._deployment_id)
            ready = deployment.state == scheduler_pb2.DEPLOYMENT_STATE_READY and len(deployment.endpoints) == 2
            # Until the scheduler notices, the dead replica is still listed: it must answer too.
            return ready and all(health(e, timeout=0.5) == "SERVING" for e in deployment.endpoints)
        except (MlaasError, redis.RedisError):
            return False


class Application:
    """Streams 1-row requests at `rate` per second and reports each answer's label (its class,
    as the application would learn it) in batches, through the SDK."""

    def __init__(self, scheduler: SchedulerClient, monitor: MonitorClient, deployment_id: str, rate: float):
        self._scheduler = scheduler
        self._monitor = monitor
        self._deployment_id = deployment_id
        self._rate = rate
        self._stop = threading.Event()
        self._labels: queue.Queue[list[tuple[str, str]] | None] = queue.Queue()
        self.sent = self.answered = self.failed = 0
        self.labels_reported = self.labels_refused = 0
        self.errors: list[str] = []
        rng = np.random.default_rng(0)
        self._rows = (rng.random((1000, 4)) * [4, 2, 5, 2] + [4, 2, 1, 0]).astype(np.float32)

    def _requests(self):
        started = time.monotonic()
        while not self._stop.is_set():
            self.sent += 1
            yield {"X": self._rows[self.sent % len(self._rows)][None, :]}
            time.sleep(max(0.0, started + self.sent / self._rate - time.monotonic()))

    def infer(self) -> None:
        ids = (f"soak-{i}" for i in range(10**9))
        pending: list[tuple[str, str]] = []
        while not self._stop.is_set():
            try:
                with DeploymentInference(self._scheduler, self._deployment_id, retry_seconds=60) as runtime:
                    for result in runtime.stream(self._requests(), ids=ids):
                        self.answered += 1
                        if result.error:  # answered with an error: failed
                            self.failed += 1
                            self.errors.append(result.error[:300])
                            continue
                        pending.append((result.request_id, str(int(result.outputs["label"][0]))))
                        if len(pending) == LABEL_EVERY:
                            self._labels.put(pending)
                            pending = []
            except MlaasError as err:  # the SDK gave up: what was sent and not answered failed
                self.failed += self.sent - self.answered
                self.answered = self.sent  # counted; a new stream starts from here
                self.errors.append(f"{err.code.name}: {err.message}"[:300])
        if pending:
            self._labels.put(pending)
        self._labels.put(None)

    def report(self) -> None:
        while (labels := self._labels.get()) is not None:
            try:
                self._monitor.report_labels(self._deployment_id, labels, retry_seconds=60)
                self.labels_reported += len(labels)
            except MlaasError as err:
                self.labels_refused += len(labels)
                self.errors.append(f"labels: {err.code.name}: {err.message}"[:300])

    def stop(self) -> None:
        self._stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between faults")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data_dir = Path(tempfile.mkdtemp(prefix="mlaas-soak-"))
    up, endpoints = start_mesh(data_dir)
    try:
        X, y = load_iris(return_X_y=True)
        with RegistryClient(endpoints["registry"]) as registry:
            register_sklearn(registry, LogisticRegression(max_iter=500).fit(X, y), "soak", X.astype(np.float32))
        scheduler = SchedulerClient(endpoints["scheduler"], timeout=5)
        monitor = MonitorClient(endpoints["monitor"], timeout=10)
        deployment = scheduler.wait_ready(scheduler.deploy("soak", replicas=2).id)
        app = Application(scheduler, monitor, deployment.id, args.rate)
        threads = [threading.Thread(target=app.infer), threading.Thread(target=app.report)]
        for thread in threads:
            thread.start()
        faults = Faults(up, endpoints, data_dir, scheduler, deployment.id)
        order: list[str] = []
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() + args.interval < end:
            time.sleep(args.interval)
            if not order:
                order = random.sample(FAULTS, len(FAULTS))
            kind = order.pop()
            print(f"{kind}: back in {faults.inject(kind):.1f}s", flush=True)
        app.stop()
        for thread in threads:
            thread.join(120)
        time.sleep(3)  # the runtimes' feedback taps drain every 0.2 s
        labels_matched = monitor.report(deployment.id).labels_seen
        results = {
            "minutes": args.minutes, "rate": args.rate, "seed": args.seed,
            "requests_sent": app.sent, "requests_failed_after_retries": app.failed,
            "labels_reported": app.labels_reported, "labels_refused_after_retries": app.labels_refused,
            "labels_lost": app.labels_reported - labels_matched,
            "faults": {k: {"count": len(v), "median_recovery_s": round(statistics.median(v), 2) if v else None}
                       for k, v in faults.recovered.items()},
            "errors": app.errors[:10],
        }  # fmt: skip
        print(json.dumps(results, indent=2))
        (HERE / "results" / "soak.json").write_text(json.dumps(results, indent=2) + "\n")
        scheduler.close()
        monitor.close()
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()


if __name__ == "__main__":
    os.environ.setdefault("MLAAS_LOG_LEVEL", "WARNING")
    main()
