"""A replica's load as the scheduler's autoscaler reads it (inference_svc/load.py,
RuntimeService.GetLoad): counted by every worker process in shared memory, so that whichever
worker answers tells the whole replica's."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from inference_svc import load as load_module
from inference_svc.load import LATENCY_BOUNDS, ReplicaLoad
from mlaas.inference_client import InferenceClient
from mlaas.v1 import runtime_pb2, runtime_pb2_grpc
from tests.inference_svc.conftest import start_runtime, stop_runtime


def test_counts_in_flight_answered_busy_seconds_and_latencies_across_workers(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(load_module.time, "perf_counter", lambda: clock[0])
    load = ReplicaLoad(workers=2)
    first, second = load.worker(0), load.worker(1)
    first.begin(100.0)
    first.begin(100.0)
    second.begin(100.0)
    second.begin(100.0)
    clock[0] = 100.004
    first.end(100.0, answered=True)
    second.end(100.0, answered=False)  # refused: load, but no latency
    clock[0] = 102.5
    second.end(100.0, answered=True)
    reading = load.reading()
    assert (reading.in_flight, reading.answered) == (1, 2)
    # 0.004 + 0.004 + 2.5 ended, and 2.5 so far of the one still running: a backlog shows at once.
    assert reading.busy_seconds == pytest.approx(5.008)
    assert list(reading.latency_bounds_seconds) == pytest.approx(LATENCY_BOUNDS)
    counted = {reading.latency_bounds_seconds[i]: c for i, c in enumerate(reading.latency_counts) if c}
    assert len(counted) == 2 and sum(counted.values()) == 2
    small, large = sorted(counted)
    assert 0.004 <= small < 0.004 * 1.5 and 2.5 <= large < 2.5 * 1.5  # each in the bucket just above it
    clock[0] = 103.5
    assert load.reading().busy_seconds == pytest.approx(6.008)  # the running one goes on counting


@pytest.mark.spawns
def test_a_runtime_of_two_workers_reports_every_request_whichever_worker_answers(tmp_path, models_dir, iris_model):
    _, X, _ = iris_model
    runtime = start_runtime(tmp_path, "--workers", "2", "--model-uri", f"iris=file://{models_dir / 'iris.onnx'}")
    try:
        # Each connection lands on one of the two workers (SO_REUSEPORT): with 16 of them, both
        # workers answer some (all on one: a chance of 2 in 65,536).
        for _ in range(16):
            with InferenceClient(runtime.address) as client:
                for _ in range(5):
                    assert client.infer("iris", {"X": X[:2].astype(np.float32)})["label"].shape == (2,)
        for _ in range(4):  # any worker's answer is the replica's
            with grpc.insecure_channel(runtime.address) as channel:
                reading = runtime_pb2_grpc.RuntimeServiceStub(channel).GetLoad(runtime_pb2.GetLoadRequest())
            assert (reading.answered, reading.in_flight, sum(reading.latency_counts)) == (80, 0, 80)
            assert 0 < reading.busy_seconds < 80 * 1.0  # nothing in flight: the answered ones' time
    finally:
        stop_runtime(runtime)
