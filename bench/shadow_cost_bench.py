"""What a shadow trial costs the version that serves: on the running mesh (`mlaas up`, one replica
of a 30-tree forest), the outside load generator (bench/loadgen.py, its own process) sends 1-row
unary requests at concurrency 1 and 8 to the replica, alternating rounds with no trial and with a
shadow trial of another 30-tree forest (which answers every request too, after the served one).

    .venv/bin/python bench/shadow_cost_bench.py [--rounds 3] [--duration 5]

Reported per concurrency (medians over rounds): requests/s and p50/p99 latency alone and with the
shadow, and their ratios. Writes bench/results/shadow-cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from live_retraining_bench import Mesh
from sklearn.ensemble import RandomForestClassifier

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.export import register_sklearn

HERE = Path(__file__).resolve().parent


def load(endpoint: str, concurrency: int, duration: float) -> dict:
    command = [sys.executable, str(HERE / "loadgen.py"), "--target", endpoint, "--model", "shadowed",
               "--features", "3", "--concurrency", str(concurrency), "--duration", str(duration)]  # fmt: skip
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.random((2_000, 3)).astype(np.float32)
    mesh = Mesh(Path(tempfile.mkdtemp(prefix="mlaas-shadow-cost-")))
    runs: dict[str, list[dict]] = {}
    try:
        with RegistryClient(mesh.registry) as registry:
            for seed in (0, 1):  # two forests of the same size: the served version and its shadow
                y = (X[:, 0] + rng.normal(0, 0.1, len(X)) > 0.5).astype(int)
                forest = RandomForestClassifier(n_estimators=30, random_state=seed).fit(X, y)
                register_sklearn(registry, forest, "shadowed", X, reference_data=X[:1000])
        with SchedulerClient(mesh.scheduler) as scheduler:
            deployment = scheduler.wait_ready(scheduler.deploy("shadowed:1").id)
            endpoint = deployment.endpoints[0]
            for _ in range(args.rounds):
                for shadow in (False, True):
                    if shadow:
                        scheduler.start_trial(deployment.id, "shadowed:2")
                        assert scheduler.wait_settled(deployment.id).trial.version == 2
                    for concurrency in (1, 8):
                        measured = load(endpoint, concurrency, args.duration)
                        runs.setdefault(f"{'shadow' if shadow else 'alone'}@{concurrency}", []).append(measured)
                    if shadow:
                        scheduler.end_trial(deployment.id, promote=False)
                        scheduler.wait_settled(deployment.id)
    finally:
        mesh.stop()
    summary = {}
    for concurrency in (1, 8):
        alone, shadow = runs[f"alone@{concurrency}"], runs[f"shadow@{concurrency}"]

        def median(measured: list[dict], field: str) -> float:
            return round(statistics.median(m[field] for m in measured), 3)

        summary[f"concurrency {concurrency}"] = {
            **{f"{field}_alone": median(alone, field) for field in ("requests_per_s", "p50_ms", "p99_ms")},
            **{f"{field}_shadow": median(shadow, field) for field in ("requests_per_s", "p50_ms", "p99_ms")},
            "p99_ratio": round(median(shadow, "p99_ms") / median(alone, "p99_ms"), 2),
            "throughput_ratio": round(median(shadow, "requests_per_s") / median(alone, "requests_per_s"), 2),
        }
    print(json.dumps(summary, indent=1))
    (HERE / "results" / "shadow-cost.json").write_text(json.dumps({"summary": summary, "runs": runs}) + "\n")


if __name__ == "__main__":
    main()
