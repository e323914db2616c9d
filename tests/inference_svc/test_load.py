"""A replica's load as the scheduler's autoscaler reads it (inference_svc/load.py,
RuntimeService.GetLoad): counted by every worker process in shared memory, so that whichever
worker answers tells the whole replica's."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from inference_svc.load import LATENCY_BOUNDS, ReplicaLoad
from mlaas.inference_client import InferenceClient
from mlaas.v1 import runtime_pb2, runtime_pb2_grpc
from tests.inference_svc.conftest import start_runtime, stop_runtime


def test_counts_in_flight_answered_busy_seconds_and_latencies_across_workers():
    load = ReplicaLoad(workers=2)
    first, second = load.worker(0), load.worker(1)
    first.begin()
    first.begin()
    second.begin()
    first.end(0.004)
    second.end(2.5)
    reading = load.reading()
    assert (reading.in_flight, reading.answered) == (1, 2)
    assert reading.busy_seconds == pytest.approx(2.504)
    assert list(reading.latency_bounds_seconds) == pytest.approx(LATENCY_BOUNDS)
    counted = {reading.latency_bounds_seconds[i]: c for i, c in enumerate(reading.latency_counts) if c}
    assert len(counted) == 2 and sum(counted.values()) == 2
    small, large = sorted(counted)
    assert 0.004 <= small < 0.004 * 1.5 and 2.5 <= large < 2.5 * 1.5  # each in the bucket just above it


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
            assert 0 < reading.busy_seconds < 80 * 1.0
    finally:
        stop_runtime(runtime)
