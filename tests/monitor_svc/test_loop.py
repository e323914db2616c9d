"""The whole loop on real parts: a SEA classifier deployed by the scheduler streams inference
(its runtime sends every record to the Monitor), the application reports labels, the concept
changes, the Monitor raises a performance drift event, retrains the registered recipe on the
recent labels, registers the challenger with its lineage, and the scheduler rolls the deployment
to it while a client keeps streaming, with no failed request; as more labels arrive, the
Monitor retrains again on twice as many."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mlaas.client import MonitorClient, RegistryClient, SchedulerClient
from mlaas.demos.scenarios import sea, sea_classifier
from mlaas.errors import FailedPrecondition, NotFound
from mlaas.export import register_sklearn
from mlaas.inference_client import DeploymentInference
from mlaas.v1 import monitor_pb2, types_pb2
from tests.conftest import tool_env

M = monitor_pb2
FINAL = (M.RETRAINING_STATE_ROLLED_OUT, M.RETRAINING_STATE_REJECTED, M.RETRAINING_STATE_FAILED)
ONE_CPU = types_pb2.Resources(cpu_millicores=1000, memory_bytes=256 * 2**20)


def stream_and_label(runtime, monitor, deployment_id, X, y, prefix) -> list:
    ids = [f"{prefix}-{i}" for i in range(len(X))]
    results = list(runtime.stream(({"X": X[i : i + 1]} for i in range(len(X))), ids))
    assert all(r.error == "" for r in results)
    monitor.report_labels(deployment_id, zip(ids, map(str, y), strict=True))
    return results


def test_concept_drift_is_detected_retrained_and_rolled_out_under_load(parts, start_monitor):
    rng = np.random.default_rng(7)
    champion = sea_classifier()
    X_train, _ = sea(2_000, 0, np.random.default_rng(0))
    with RegistryClient(parts.registry_address) as registry:
        register_sklearn(registry, champion, "sea", X_train, reference_data=X_train[:1000], run_resources=ONE_CPU)
    monitor_server = start_monitor(parts.registry_address)
    monitor_address = f"127.0.0.1:{monitor_server.server.port}"
    scheduler = parts.start(env={"MLAAS_MONITOR_ADDR": monitor_address})
    scheduler_address = f"127.0.0.1:{scheduler.server.port}"
    monitor_server.retrainer._scheduler = scheduler_address  # the scheduler's port is known only now
    failures, streamed = [], []
    with SchedulerClient(scheduler_address) as schedulers, MonitorClient(monitor_address) as monitor:
        deployment = schedulers.wait_ready(schedulers.deploy("sea").id)
        # This test is about the loop's mechanics on real parts. On SEA 0 -> 3 a challenger is
        # about 3 points better, which 190 held-out labels may show only at lower confidence
        # (p=0.09 in one run): the verdict's statistics are tested in
        # test_detectors.py and measured in bench/retraining_bench.py.
        monitor.set_policy(deployment.id, M.MonitorPolicy(challenger_confidence=0.5))
        runtime = DeploymentInference(schedulers, deployment.id)
        stream_and_label(runtime, monitor, deployment.id, *sea(2_000, 0, rng), "before")
        assert monitor.retrainings(deployment.id) == []  # a stationary stream retrains nothing
        after_X, after_y = sea(1_500, 3, rng)
        stream_and_label(runtime, monitor, deployment.id, after_X, after_y, "after")

        stop = threading.Event()

        def keep_streaming():  # concept 3 traffic while the Monitor retrains and rolls out
            with DeploymentInference(schedulers, deployment.id) as client:
                rows = ({"X": after_X[i % 1500 : i % 1500 + 1]} for i in range(10**9))
                try:
                    for result in client.stream(rows, (f"load-{i}" for i in range(10**9))):
                        streamed.append(result)
                        if stop.is_set() and result.model_version == "2":  # served by the new version
                            break
                except Exception as err:  # reported by the assertion below
                    failures.append(err)

        load = threading.Thread(target=keep_streaming)
        load.start()
        try:
            states = []
            for retraining in monitor.watch_retraining(deployment.id):
                states.append(retraining.state)
                if retraining.state in FINAL:
                    break
        finally:
            stop.set()
            load.join(60)
        assert retraining.state == M.RETRAINING_STATE_ROLLED_OUT, retraining.reason
        assert failures == [] and all(r.error == "" for r in streamed)
        assert {r.model_version for r in streamed} == {"1", "2"}
        deadline = time.monotonic() + 30
        while (report := monitor.report(deployment.id)).model_version != 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # the new version's first feedback is on its way
        performance = [e for e in report.recent_events if e.kind == M.DRIFT_KIND_PERFORMANCE]
        rolled = schedulers.get(deployment.id)
    assert M.RETRAINING_STATE_TRAINING in states and M.RETRAINING_STATE_EVALUATING in states
    assert retraining.parent_version == 1 and retraining.challenger_version == 2
    assert retraining.challenger_metrics[0].value > retraining.champion_metrics[0].value
    assert rolled.model.version == 2 and [r.model_version for r in rolled.replica_status] == [2]
    with RegistryClient(parts.registry_address) as registry:
        new = registry.get("sea@champion")
    assert new.version == 2 and new.description.lineage.parent_version == 1
    assert new.description.lineage.trigger == retraining.trigger_event_id != ""
    assert report.labels_seen >= 3_000 and report.model_version == 2
    assert [e.id for e in performance] == [retraining.trigger_event_id]  # one drift, one retraining
    assert performance[0].model_version == 1 and performance[0].statistic == "error-rate-lr"
    assert performance[0].window_end_sample > 2_000  # labeled samples of version 1: after the change
    cli, where = [sys.executable, "-m", "mlaas.cli"], ["--monitor", monitor_address, "--json"]
    listed = subprocess.run([*cli, "retrainings", deployment.id, *where], capture_output=True, text=True,
                            env=tool_env())  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [r["state"] for r in json.loads(listed.stdout)] == ["RETRAINING_STATE_ROLLED_OUT"]
    drift = subprocess.run([*cli, "drift", deployment.id, *where], capture_output=True, text=True, env=tool_env())
    assert json.loads(drift.stdout)["model_version"] == 2

    # More labels of the new concept: the series goes on with a round on twice the labels since
    # the same change, judged against version 2 (the champion now), without a new alarm.
    with SchedulerClient(scheduler_address) as schedulers, MonitorClient(monitor_address) as monitor:
        with DeploymentInference(schedulers, deployment.id) as runtime:
            stream_and_label(runtime, monitor, deployment.id, *sea(1_000, 3, rng), "later")
        deadline = time.monotonic() + 120
        while len(finished := [r for r in monitor.retrainings(deployment.id) if r.state in FINAL]) < 2:
            assert time.monotonic() < deadline, monitor.retrainings(deployment.id)
            time.sleep(0.5)
    second = next(r for r in finished if r.id != retraining.id)
    assert second.parent_version == 2 and second.trigger_event_id == retraining.trigger_event_id
    assert second.state in (M.RETRAINING_STATE_ROLLED_OUT, M.RETRAINING_STATE_REJECTED), second.reason
    assert "held-out labels" in second.reason


def test_labels_from_a_file_through_the_cli(registry, start_monitor, tmp_path):
    server = start_monitor(f"127.0.0.1:{registry.port}")
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nr-1,0\nr-2,1\n")
    command = [sys.executable, "-m", "mlaas.cli", "feedback", "d-1", "--labels", str(labels),
               "--monitor", f"127.0.0.1:{server.server.port}"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=tool_env())
    assert done.returncode == 0 and done.stdout.strip() == "2 labels stored; 2 wait for their prediction"
    labels.write_text("r-3,1\nr-4\n")
    refused = subprocess.run(command, capture_output=True, text=True, env=tool_env())
    assert refused.returncode == 1 and "row 2 should be request_id,label; got ['r-4']" in refused.stderr


@pytest.fixture
def received(monkeypatch) -> list:
    """Every message runtimes send the Monitor's IngestFeedback (its servicer wrapped to record them)."""
    from monitor_svc.servicer import MonitorServicer

    messages: list = []
    ingest = MonitorServicer.IngestFeedback

    def recording(self, request_iterator, context):
        def tap():
            for message in request_iterator:
                messages.append(message)
                yield message

        return ingest(self, tap(), context)

    monkeypatch.setattr(MonitorServicer, "IngestFeedback", recording)
    return messages


def test_a_strict_deployment_sends_only_summaries_and_still_shows_data_drift(
    parts, start_monitor, iris_model, received
):
    """Every message the runtimes send the Monitor is recorded (`received`)."""
    _, X, _ = iris_model
    monitor_server = start_monitor(parts.registry_address)
    monitor_address = f"127.0.0.1:{monitor_server.server.port}"
    scheduler = parts.start(env={"MLAAS_MONITOR_ADDR": monitor_address})
    with SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as schedulers, MonitorClient(monitor_address) as monitor:
        deployment = schedulers.wait_ready(schedulers.deploy("iris", strict_node="node-a").id)
        runtime = DeploymentInference(schedulers, deployment.id)
        rows = np.vstack([X] * 6)  # 900 rows like the reference, then 900 with a longer sepal
        shifted = rows.copy()
        shifted[:, 0] += 1.5
        for batch in (rows, shifted):
            assert all(r.error == "" for r in runtime.stream({"X": batch[i : i + 1]} for i in range(len(batch))))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                report = monitor.report(deployment.id)
                if any(e.kind == M.DRIFT_KIND_DATA for e in report.recent_events):
                    break
            except NotFound:  # no summary has arrived yet
                pass
            time.sleep(0.3)
    assert received and all(not m.records and m.summaries for m in received)  # no row ever left the node
    assert all(s.HasField("window_start") and s.features[0].n >= 256 for m in received for s in m.summaries)
    data = [e for e in report.recent_events if e.kind == M.DRIFT_KIND_DATA]
    assert data and data[0].statistic == "chi2-histogram" and "x0" in data[0].features
    assert data[0].window_end_sample > 900 and data[0].value > data[0].threshold
    assert report.retraining_unavailable_reason.startswith("STRICT deployment")
    assert {f.feature for f in report.features} == {"x0", "x1", "x2", "x3"}


def _labels_on(node_store: Path) -> tuple[int, int]:
    """(labels, labels matched with their prediction) in a STRICT deployment's node store."""
    with sqlite3.connect(node_store) as db:
        return db.execute("SELECT COUNT(*), COUNT(matched) FROM labels").fetchone()


def test_a_strict_deployments_labels_stay_on_its_node_and_still_show_performance_drift(parts, start_monitor, received):
    """Labels go to the replica, on the deployment's node; the Monitor (every message the
    runtimes send it recorded) receives counts of wrong predictions only, and from them raises
    the performance drift of a concept change. Labels sent to the Monitor by mistake are
    refused, and none is stored there."""
    rng = np.random.default_rng(11)
    X_train, _ = sea(2_000, 0, np.random.default_rng(0))
    with RegistryClient(parts.registry_address) as registry:
        register_sklearn(
            registry, sea_classifier(), "sea", X_train, reference_data=X_train[:1000], run_resources=ONE_CPU
        )
    monitor_server = start_monitor(parts.registry_address)
    monitor_address = f"127.0.0.1:{monitor_server.server.port}"
    scheduler = parts.start(env={"MLAAS_MONITOR_ADDR": monitor_address})
    with SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as schedulers, MonitorClient(monitor_address) as monitor:
        deployment = schedulers.wait_ready(schedulers.deploy("sea", strict_node="node-a").id)
        with DeploymentInference(schedulers, deployment.id) as runtime:
            for concept, prefix in ((0, "before"), (3, "after")):
                X, y = sea(2_000, concept, rng)
                ids = [f"{prefix}-{i}" for i in range(len(X))]
                assert all(r.error == "" for r in runtime.stream(({"X": X[i : i + 1]} for i in range(len(X))), ids))
                reply = runtime.report_labels(zip(ids, map(str, y), strict=True))
                assert reply.accepted == 2_000
            with pytest.raises(FailedPrecondition, match="is STRICT: its labels stay on its node"):
                monitor.report_labels(deployment.id, [("before-0", "1")])
        deadline = time.monotonic() + 60
        while True:
            report = monitor.report(deployment.id)
            if any(e.kind == M.DRIFT_KIND_PERFORMANCE for e in report.recent_events):
                break
            assert time.monotonic() < deadline, report
            time.sleep(0.3)
    node_store = Path(parts.runtime_env["MLAAS_DATA_DIR"]) / "node" / f"{deployment.id}.sqlite3"
    deadline = time.monotonic() + 30
    while (stored := _labels_on(node_store)) != (4_000, 4_000):  # predictions reach the store as they drain
        assert time.monotonic() < deadline, stored
        time.sleep(0.3)
    counts = [s for m in received for s in getattr(m, "label_summaries", [])]
    assert counts and sum(s.labels for s in counts) <= 4_000 and all(s.errors <= s.labels for s in counts)
    assert all(not m.records for m in received)  # and summaries of the inputs, as before
    assert not any(b"before-" in m.SerializeToString() or b"after-" in m.SerializeToString() for m in received)
    assert monitor_server.store.label_count(deployment.id) == (0, 0)
    performance = [e for e in report.recent_events if e.kind == M.DRIFT_KIND_PERFORMANCE]
    assert performance[0].statistic == "error-rate-lr" and report.labels_seen >= 2_000
    assert report.retraining_unavailable_reason.startswith("STRICT deployment")
