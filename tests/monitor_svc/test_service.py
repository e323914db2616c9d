"""The Monitor's service on its own: durable labels across a crash, data and prediction drift
from raw feedback, policies, and the statuses bad input gets. Feedback is sent the way a
runtime sends it (IngestFeedback with raw tensors) by the test itself."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mlaas.client import MonitorClient, RegistryClient
from mlaas.demos.scenarios import covariate_streams
from mlaas.errors import InvalidArgument, NotFound
from mlaas.export import register_sklearn
from mlaas.services.net import free_port, wait_healthy
from mlaas.tensors import to_raw
from mlaas.v1 import monitor_pb2, monitor_pb2_grpc
from tests.conftest import tool_env

pytestmark = pytest.mark.spawns  # see pyproject.toml


M = monitor_pb2


@pytest.fixture
def gauss(registry):
    """A classifier on the 5-d Gaussian of the drift benchmark, registered with its reference."""
    streams = covariate_streams(1)
    X = streams["reference_0"]
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    address = f"127.0.0.1:{registry.port}"
    with RegistryClient(address) as client:
        register_sklearn(client, LogisticRegression().fit(X, y), "gauss", X, reference_data=X)
    return address, streams


def tensor(name, array) -> monitor_pb2.RawTensor:
    datatype, raw = to_raw(np.asarray(array))
    return M.RawTensor(name=name, datatype=datatype, shape=np.asarray(array).shape, data=raw)


def feedback(deployment, X, labels, ids, version=1, batch=100):
    for start in range(0, len(X), batch):
        rows = slice(start, start + batch)
        record = M.InferenceRecord(
            request_ids=ids[rows], model_version=version,
            inputs=[tensor("X", X[rows])], outputs=[tensor("label", labels[rows])],
        )  # fmt: skip
        yield M.IngestFeedbackRequest(deployment_id=deployment, model_name="gauss", records=[record])


def test_acknowledged_labels_survive_a_monitor_crash(gauss, tmp_path):
    registry_address, streams = gauss
    X = streams["null_0"][:1000]
    ids = [f"r-{i}" for i in range(1000)]

    def start():
        port = free_port()
        env = tool_env(MLAAS_DATA_DIR=str(tmp_path), MLAAS_MONITOR_PORT=str(port),
                       MLAAS_MONITOR_METRICS_PORT="-1", MLAAS_REGISTRY_ADDR=registry_address)  # fmt: skip
        process = subprocess.Popen([sys.executable, "-m", "monitor_svc"], env=env, stderr=subprocess.DEVNULL)
        wait_healthy(f"127.0.0.1:{port}", timeout=60)
        return process, f"127.0.0.1:{port}"

    first, address = start()
    try:
        with MonitorClient(address) as monitor:
            reply = monitor.report_labels("d-1", ((i, "1") for i in ids), batch=250)
        assert (reply.accepted, reply.unmatched) == (1000, 1000)  # no prediction yet: kept for later
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    second, address = start()
    try:
        with grpc.insecure_channel(address) as channel, MonitorClient(address) as monitor:
            stub = monitor_pb2_grpc.MonitorServiceStub(channel)
            reply = stub.IngestFeedback(feedback("d-1", X, np.ones(1000, dtype=np.int64), ids))
            assert reply.accepted_rows == 1000
            report = monitor.report("d-1")
        assert report.labels_seen == 1000 and report.recent_performance == 1.0
    finally:
        second.terminate()
        second.wait()


def scanned_report(monitor: MonitorClient, deployment_id: str, seconds: float = 120) -> M.DriftReport:
    """The report once every sample fed is scanned: a new version's rows wait while its drift
    thresholds are calibrated, seconds on a quiet machine, more on a busy one."""
    deadline = time.monotonic() + seconds
    while (report := monitor.report(deployment_id)).samples_waiting and time.monotonic() < deadline:
        time.sleep(0.1)
    assert report.samples_waiting == 0, f"{report.samples_waiting} samples still wait after {seconds} s"
    return report


def test_a_covariate_shift_raises_data_drift_and_names_the_feature(gauss, start_monitor):
    registry_address, streams = gauss
    server = start_monitor(registry_address)
    address = f"127.0.0.1:{server.server.port}"
    model_labels = lambda X: (X[:, 0] + X[:, 1] > 0).astype(np.int64)  # noqa: E731
    with grpc.insecure_channel(address) as channel, MonitorClient(address) as monitor:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        quiet = streams["null_0"][:1000]
        stub.IngestFeedback(feedback("d-2", quiet, model_labels(quiet), [""] * 1000))
        assert [e for e in scanned_report(monitor, "d-2").recent_events if e.kind == M.DRIFT_KIND_DATA] == []
        shifted = streams["shift_0"]
        stub.IngestFeedback(feedback("d-2", shifted, model_labels(shifted), [""] * len(shifted)))
        for dropped in (3, 4):  # what a runtime's full buffer lost, reported with its next batches
            stub.IngestFeedback(iter([M.IngestFeedbackRequest(deployment_id="d-2", dropped=dropped)]))
        report = scanned_report(monitor, "d-2")
        first_page = stub.ListDriftEvents(M.ListDriftEventsRequest(deployment_id="d-2", page_size=2))
        every = list(monitor.drift_events("d-2"))
    data = [e for e in report.recent_events if e.kind == M.DRIFT_KIND_DATA]
    # The drift persists: it started once, and is raised again at most once per hold (four
    # longest windows) while it lasts.
    assert all(b.window_end_sample - a.window_end_sample > 4 * 256 for a, b in itertools.pairwise(data))
    assert data[0].features == ["x0"] and data[0].statistic == "mean-z"
    assert [e.id for e in every] == [e.id for e in report.recent_events]  # fewer than 20: all of them
    assert [e.id for e in first_page.events] == [e.id for e in every[:2]] and first_page.next_page_token
    assert data[0].value > data[0].threshold and 1000 < data[0].window_end_sample < 1400
    assert report.samples_seen == 1000 + len(shifted) and report.retraining_unavailable_reason == ""
    assert report.feedback_dropped == 7
    x0 = next(f for f in report.features if f.feature == "x0")
    assert x0.statistic == "mean-z" and x0.threshold == data[0].threshold
    assert x0.drifted and x0.first_seen_sample == data[0].window_end_sample  # shifted to the end


def test_the_cli_report_says_when_a_feature_has_too_few_samples_to_test(gauss, start_monitor):
    registry_address, streams = gauss
    address = f"127.0.0.1:{start_monitor(registry_address).server.port}"
    first = streams["null_0"][:3]  # fewer rows than the shortest window
    with grpc.insecure_channel(address) as channel, MonitorClient(address) as monitor:
        monitor_pb2_grpc.MonitorServiceStub(channel).IngestFeedback(feedback("d-4", first, np.zeros(3), [""] * 3))
        assert monitor.report("d-4").samples_seen == 3  # scanned or waiting for the thresholds
        scanned_report(monitor, "d-4")
    shown = subprocess.run([sys.executable, "-m", "mlaas.cli", "drift", "d-4", "--monitor", address],
                           capture_output=True, text=True, env=tool_env())  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "3 samples" in shown.stdout
    assert shown.stdout.count("- (too few samples)") == 5 and "inf" not in shown.stdout


def test_policies_and_bad_input(gauss, start_monitor):
    registry_address, _ = gauss
    server = start_monitor(registry_address)
    address = f"127.0.0.1:{server.server.port}"
    with MonitorClient(address) as monitor:
        policy = monitor.set_policy("d-3", M.MonitorPolicy(false_alarms_per_100k=10, auto_retrain=False))
        assert policy.false_alarms_per_100k == 10 and not policy.auto_retrain and policy.min_labels == 500
        assert monitor.policy("d-3") == policy
        with pytest.raises(InvalidArgument, match="window_size must be between 8 and 4096"):
            monitor.set_policy("d-3", M.MonitorPolicy(window_size=2))
        for rate in (0.0, -1.0, float("nan"), 1e6):
            with pytest.raises(InvalidArgument, match="false_alarms_per_100k must be above 0 and at most 4000"):
                monitor.set_policy("d-3", M.MonitorPolicy(false_alarms_per_100k=rate))
        with pytest.raises(InvalidArgument, match="min_labels must be a finite number, not negative"):
            monitor.set_policy("d-3", M.MonitorPolicy(min_labels=-1))
        assert policy.first_round_labels == 200
        with pytest.raises(InvalidArgument, match="first_round_labels must be at least 40"):
            monitor.set_policy("d-3", M.MonitorPolicy(first_round_labels=10))
        assert monitor.set_policy("d-4", M.MonitorPolicy(first_round_labels=100)).first_round_labels == 100
        for labels in (5, 10_001):  # a running trial keeps its labels: bounded
            with pytest.raises(InvalidArgument, match=r"trial_labels must be between 10 .* and 10000"):
                monitor.set_policy("d-3", M.MonitorPolicy(trial_labels=labels))
        for confidence in (float("nan"), 0.2, 1.0):
            with pytest.raises(InvalidArgument, match=r"challenger_confidence must be at least 0\.5 and below 1"):
                monitor.set_policy("d-3", M.MonitorPolicy(challenger_confidence=confidence))
        with pytest.raises(InvalidArgument, match="256 characters at most"):
            monitor.report_labels("d-3", [("r-1", "x" * 16_384)])
        for target in (float("nan"), float("inf")):
            with pytest.raises(InvalidArgument, match="the target must be a finite number"):
                monitor.report_labels("d-3", [("r-1", target)])
        with pytest.raises(NotFound, match="no feedback from deployment 'd-9' yet"):
            monitor.report("d-9")
        with pytest.raises(InvalidArgument, match="needs a request_id and a class_label or target"):
            monitor.report_labels("d-3", [("", "1")])
        assert monitor.policy("d-3") == policy  # refusals changed nothing
    with grpc.insecure_channel(address) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.IngestFeedback(iter([M.IngestFeedbackRequest(model_name="gauss")]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "deployment_id is required" in info.value.details()
        bad = M.InferenceRecord(model_version=1, inputs=[tensor("X", np.zeros((3, 5), np.float32))],
                                outputs=[tensor("label", np.zeros(2, np.int64))])  # fmt: skip
        with pytest.raises(grpc.RpcError) as info:
            stub.IngestFeedback(iter([M.IngestFeedbackRequest(deployment_id="d-3", model_name="gauss", records=[bad])]))
        assert "different row counts" in info.value.details()
        missing = M.IngestFeedbackRequest(deployment_id="d-4", model_name="nope", records=[
            M.InferenceRecord(model_version=1, inputs=[tensor("X", np.zeros((1, 5), np.float32))],
                              outputs=[tensor("label", np.zeros(1, np.int64))])])  # fmt: skip
        with pytest.raises(grpc.RpcError) as info:
            stub.IngestFeedback(iter([missing]))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        # Malformed tensors and rows of the wrong width: the reason, never INTERNAL.
        garbled = M.InferenceRecord(model_version=1, inputs=[M.RawTensor(datatype="FP32", shape=[4, 1000], data=b"x")],
                                    outputs=[tensor("label", np.zeros(4, np.int64))])  # fmt: skip
        wide = M.InferenceRecord(model_version=1, inputs=[tensor("X", np.zeros((4, 1000), np.float32))],
                                 outputs=[tensor("label", np.zeros(4, np.int64))])  # fmt: skip
        forged = [  # a trial's count the window cannot hold
            M.LabelSummary(model_version=1, first_label=1, labels=32, errors=3, trial=trial)
            for trial in (M.TrialCount(challenger_version=2, labels=33, wins=1),
                          M.TrialCount(challenger_version=2, labels=32, wins=20, losses=13),
                          M.TrialCount(challenger_version=2, labels=32, wins=-1))
        ]  # fmt: skip
        for summary in forged:
            request = M.IngestFeedbackRequest(deployment_id="d-6", model_name="gauss", label_summaries=[summary])
            with pytest.raises(grpc.RpcError) as info:
                stub.IngestFeedback(iter([request]))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "trial count" in info.value.details()
        for record, reason in ((garbled, "cannot be read"), (wide, "feedback rows have 1000 values")):
            request = M.IngestFeedbackRequest(deployment_id="d-5", model_name="gauss", records=[record])
            with pytest.raises(grpc.RpcError) as info:
                stub.IngestFeedback(iter([request]))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and reason in info.value.details()


def test_a_partial_policy_change_keeps_the_other_fields(gauss, start_monitor):
    """Setting one field alone (then expected_run_length) once returned every other field at its default and
    auto_retrain false (a proto3 bool): retraining silently off. Also through `mlaas policy`."""
    registry_address, _ = gauss
    address = f"127.0.0.1:{start_monitor(registry_address).server.port}"
    with MonitorClient(address) as monitor:
        changed = monitor.set_policy("d-7", M.MonitorPolicy(false_alarms_per_100k=0.5))
        assert changed.false_alarms_per_100k == 0.5 and changed.auto_retrain and changed.min_labels == 500
        assert not monitor.set_policy("d-7", M.MonitorPolicy(auto_retrain=False)).auto_retrain
        kept = monitor.set_policy("d-7", M.MonitorPolicy(window_size=64))
        assert (kept.window_size, kept.false_alarms_per_100k, kept.auto_retrain) == (64, 0.5, False)

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "mlaas.cli", "policy", "d-7", "--monitor", address, *args]
        return subprocess.run(command, capture_output=True, text=True, env=tool_env(), timeout=60)

    changed = cli("--auto-retrain", "on", "--min-labels", "300", "--shadow-retrained", "on", "--trial-labels", "50",
                  "--json")  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    policy = json.loads(changed.stdout)
    assert policy["auto_retrain"] is True and policy["min_labels"] == 300 and policy["window_size"] == 64
    assert policy["shadow_retrained"] is True and policy["trial_labels"] == 50
    assert cli("--min-labels", "400", "--json").stdout.count('"shadow_retrained": true') == 1  # kept
    shown = cli().stdout.split()
    assert shown[shown.index("false_alarms_per_100k") + 1] == "0.5" and shown[shown.index("auto_retrain") + 1] == "True"
    refused = cli("--window-size", "2")
    assert refused.returncode == 1 and "window_size must be between 8 and 4096" in refused.stderr
