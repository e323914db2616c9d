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

import grpc
import numpy as np
import pytest

from mlaas.client import MonitorClient, RegistryClient, SchedulerClient
from mlaas.demos.scenarios import sea, sea_classifier
from mlaas.errors import FailedPrecondition, NotFound
from mlaas.export import register_sklearn
from mlaas.inference_client import DeploymentInference
from mlaas.v1 import monitor_pb2, monitor_pb2_grpc, registry_pb2
from monitor_svc.retrainer import Job
from tests.conftest import tool_env
from tests.monitor_svc.loops import FINAL, ONE_CPU, SEA_REFERENCE, label_on_node, monitor_and_scheduler, wired

pytestmark = pytest.mark.spawns  # see pyproject.toml


M = monitor_pb2
ROLLED_OUT = M.RETRAINING_STATE_ROLLED_OUT


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
    monitor_server, scheduler = wired(parts, start_monitor)
    monitor_address = f"127.0.0.1:{monitor_server.server.port}"
    scheduler_address = f"127.0.0.1:{scheduler.server.port}"
    failures, streamed = [], []
    with SchedulerClient(scheduler_address) as schedulers, MonitorClient(monitor_address) as monitor:
        deployment = schedulers.wait_ready(schedulers.deploy("sea").id)
        runtime = DeploymentInference(schedulers, deployment.id)
        stream_and_label(runtime, monitor, deployment.id, *sea(2_000, 0, rng), "before")
        assert monitor.retrainings(deployment.id) == []  # a stationary stream retrains nothing
        # This test is about the loop's mechanics on real parts, so the change leaves no doubt
        # (each label flipped): on SEA 0 -> 3 alone a challenger is about 3 points better, and
        # whether the first round's few hundred held-out labels show it depends on when they arrive,
        # which a busy machine decides (a run lost its round at p=0.69). The verdict's statistics
        # are tested in tests/mlaas/test_rounds.py and measured in bench/retraining_bench.py.
        after_X, concept_3 = sea(1_500, 3, rng)
        after_y = 1 - concept_3
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
    # Every stage timed, in order, from the alarm to the new version serving.
    stages = [s.stage for s in retraining.stages]
    assert stages[:3] == ["alarm", "due", "challenger placed"], stages
    # One training job fits the folds that judge and the version that rolls out.
    assert stages[2:] == [
        *(f"challenger {stage}" for stage in ("placed", "started", "ready", "fitted", "exported", "ended")),
        "judged", "registered", "serving",
    ], stages  # fmt: skip
    times = [s.at.ToNanoseconds() for s in retraining.stages]
    assert times == sorted(times), retraining.stages
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
    table = subprocess.run([*cli, "retrainings", deployment.id, "--stages", "--monitor", monitor_address],
                           capture_output=True, text=True, env=tool_env())  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert f"{retraining.id}: due +" in table.stdout and "serving +" in table.stdout
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

    # A round due right after a rollout, while the Monitor still holds the version of the last
    # feedback batch (version 1 here), is judged against what the scheduler says serves.
    retrainer = monitor_server.retrainer
    stale = Job(deployment.id, retrainer._contexts.load("sea", 1), "", 0, 0, 0.5)
    record = M.Retraining(id="r-0000000000ff", deployment_id=deployment.id, parent_version=1)
    with SchedulerClient(scheduler_address) as schedulers:
        serving = schedulers.get(deployment.id).model.version
    judged = retrainer._against_serving(stale, record)
    assert serving >= 2 and judged.context.version == record.parent_version == serving


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
    scheduler = parts.start(env={"MLAAS_MONITOR_ADDR": monitor_address}, warm_trainers=True)
    with SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as schedulers, MonitorClient(monitor_address) as monitor:
        deployment = schedulers.wait_ready(schedulers.deploy("iris", strict_node="node-a").id)
        runtime = DeploymentInference(schedulers, deployment.id)
        rows = np.vstack([X] * 6)  # 900 rows like the reference, then 900 with a longer sepal
        shifted = rows.copy()
        shifted[:, 0] += 1.5
        for batch in (rows, shifted):
            assert all(r.error == "" for r in runtime.stream({"X": batch[i : i + 1]} for i in range(len(batch))))
        deadline = time.monotonic() + 120  # two full test runs at once: 30 s did not always do
        while time.monotonic() < deadline:
            try:
                report = monitor.report(deployment.id)
                if any(e.kind == M.DRIFT_KIND_DATA for e in report.recent_events):
                    break
            except NotFound:  # no summary has arrived yet
                pass
            time.sleep(0.3)
        # A summary over the node's own quantiles (as runtimes once counted) is refused.
        given = monitor_server.deployments.get(deployment.id).summary_edges()
        own = M.WindowSummary(model_version=1, features=[M.FeatureSummary(
            feature_index=0, bin_edges=np.quantile(shifted[:, 0], [0.25, 0.5, 0.75]).tolist(), counts=[1] * 4, n=4,
        )])  # fmt: skip
        attack = M.IngestFeedbackRequest(deployment_id=deployment.id, summaries=[own])
        runtimes_sent = list(received)
        with grpc.insecure_channel(monitor_address) as channel, pytest.raises(grpc.RpcError) as refused:
            monitor_pb2_grpc.MonitorServiceStub(channel).IngestFeedback(iter([attack]), timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "never the node's own" in refused.value.details()
    sent = [m for m in runtimes_sent if not m.edges_for_version]
    assert sent and all(not m.records and m.summaries for m in sent)  # no row ever left the node
    summaries = [s for m in sent for s in m.summaries]
    assert all(s.HasField("window_start") and s.features[0].n >= 256 for s in summaries)
    assert all(f.mean == f.variance == 0 for s in summaries for f in (*s.features, *s.outputs))  # counts only
    # Every window, before and after the shift, counted over the reference's deciles, never the node's.
    assert all([f.bin_edges for f in s.features] == [e.edges for e in given.features] for s in summaries)
    data = [e for e in report.recent_events if e.kind == M.DRIFT_KIND_DATA]
    assert data and data[0].statistic == "chi2-histogram" and "x0" in data[0].features
    assert data[0].window_end_sample > 900 and data[0].value > data[0].threshold
    assert report.retraining_unavailable_reason == ""  # retrained on its node, should labels show a drift
    assert {f.feature for f in report.features} == {"x0", "x1", "x2", "x3"}


def _labels_on(node_store: Path) -> tuple[int, int]:
    """(labels, labels matched with their prediction) in a STRICT deployment's node store."""
    with sqlite3.connect(node_store) as db:
        return db.execute("SELECT COUNT(*), COUNT(matched) FROM labels").fetchone()


@pytest.fixture
def crossing(monkeypatch, received) -> list[bytes]:
    """Every message that crosses a STRICT node's boundary, serialized: what its runtimes send the
    Monitor (`received`), the scheduler's training-job requests and records (a round's plan in,
    its result and model out), and what is registered (the model a round sent back, with its description).
    The services' servicers are wrapped to record them; the rpcs run as they would."""
    from registry_svc.servicer import RegistryServicer
    from scheduler_svc.servicer import SchedulerServicer

    seen: list[bytes] = []
    for name in ("RunTrainingJob", "GetTrainingJob", "DeleteTrainingJob"):
        original = getattr(SchedulerServicer, name)

        def recording(self, request, context, original=original):
            reply = original(self, request, context)
            seen.extend((request.SerializeToString(), reply.SerializeToString()))
            return reply

        monkeypatch.setattr(SchedulerServicer, name, recording)
    read_output = SchedulerServicer.ReadTrainingJobOutput

    def recording_output(self, request, context):
        seen.append(request.SerializeToString())
        for reply in read_output(self, request, context):
            seen.append(reply.SerializeToString())
            yield reply

    monkeypatch.setattr(SchedulerServicer, "ReadTrainingJobOutput", recording_output)
    register = RegistryServicer.RegisterModel

    def recording_register(self, request_iterator, context):
        def tap():
            for message in request_iterator:
                seen.append(message.SerializeToString())
                yield message

        return register(self, tap(), context)

    monkeypatch.setattr(RegistryServicer, "RegisterModel", recording_register)

    class Crossing(list):
        def __iter__(self):  # the runtimes' messages too, as they are at the time of asking
            return iter([*seen, *(m.SerializeToString() for m in received)])

    return Crossing()


def test_a_strict_deployment_is_retrained_on_its_node_and_no_row_or_label_leaves_it(
    parts, start_monitor, crossing, tmp_path
):
    """The whole STRICT loop: inference, labels reported to the replica on the deployment's
    node, performance drift seen from counts, a retraining round run as a training job on that
    node, the better version registered (lineage: where, on how many samples) and rolled out.
    Every message that crossed the node's boundary (`crossing`) is searched for each input row
    (as float32 and float64 bytes) and each request id (which ties a label to its row): none is
    there. Labels sent to the Monitor by mistake are refused, and none is stored there."""
    monitor_server, scheduler_address = monitor_and_scheduler(parts, start_monitor)
    monitor_address = f"127.0.0.1:{monitor_server.server.port}"
    rng, rows, ids = np.random.default_rng(11), [], []
    with SchedulerClient(scheduler_address) as schedulers, MonitorClient(monitor_address) as monitor:
        deployment = schedulers.wait_ready(schedulers.deploy("sea", strict_node="node-a").id)
        monitor.set_policy(deployment.id, M.MonitorPolicy(challenger_confidence=0.5))  # SEA 0 -> 3 is a small change
        with DeploymentInference(schedulers, deployment.id) as runtime:
            # SEA 0 -> 3 is a small change: a round on few labels may be rejected (when the load
            # moves the change point), and the next round comes ~500 labels later.
            for concept, prefix, n in ((0, "before", 2_000), (3, "after", 2_500)):
                X, batch = label_on_node(runtime, concept, prefix, n, rng)
                rows.append(X)
                ids += batch
            with pytest.raises(FailedPrecondition, match="is STRICT: its labels stay on its node"):
                monitor.report_labels(deployment.id, [("before-0", "1")])
        deadline = time.monotonic() + 180
        while not (rolled_out := [r for r in monitor.retrainings(deployment.id) if r.state == ROLLED_OUT]):
            assert time.monotonic() < deadline, [r.reason for r in monitor.retrainings(deployment.id)]
            time.sleep(0.2)
        retraining = rolled_out[0]
        rolled = schedulers.wait_settled(deployment.id)
        report = monitor.report(deployment.id)
        listed = monitor.retrainings(deployment.id)
    assert retraining.trained_on == "node-a" and retraining.training_samples >= 500
    assert retraining.challenger_metrics[0].value > retraining.champion_metrics[0].value
    assert rolled.model.version == 2 and rolled.node == "node-a"
    with RegistryClient(parts.registry_address) as registry:
        new = registry.get("sea@champion")
        registry.download("sea:2", tmp_path / "reference.npy", registry_pb2.ARTIFACT_KIND_REFERENCE_DATA)
    assert new.version == 2 and new.description.lineage.trained_on == "node-a"
    assert new.description.lineage.training_rows == retraining.training_samples
    assert np.array_equal(np.load(tmp_path / "reference.npy"), SEA_REFERENCE)  # the owner's rows, not the node's
    performance = [e for e in report.recent_events if e.kind == M.DRIFT_KIND_PERFORMANCE]
    assert performance and performance[0].statistic == "error-rate-lr" and performance[0].model_version == 1
    assert [r.trigger_event_id for r in listed][:1] == [performance[0].id]
    assert monitor_server.store.label_count(deployment.id) == (0, 0)

    crossed = list(crossing)
    assert len(crossed) > 10  # the recording worked: feedback, the round's job, the registration
    everything = b"\x00".join(crossed)
    every_row = np.vstack(rows)
    leaked_rows = [
        i for i, row in enumerate(every_row)
        if row.astype(np.float32).tobytes() in everything or row.astype(np.float64).tobytes() in everything
    ]  # fmt: skip
    assert leaked_rows == []
    assert [i for i in ids if i.encode() in everything] == []
    node_store = Path(parts.runtime_env["MLAAS_DATA_DIR"]) / "node" / f"{deployment.id}.sqlite3"
    deadline = time.monotonic() + 30  # the replica (swapped, not restarted) stores its last predictions as it goes
    while _labels_on(node_store) != (4_500, 4_500):  # they are all there, on the node
        assert time.monotonic() < deadline, _labels_on(node_store)
        time.sleep(0.1)


def test_the_strict_drift_demo_shows_the_loop_on_the_node(parts, start_monitor):
    """`mlaas demo drift --strict NODE`, as a user runs it against a mesh."""
    monitor_server, scheduler = wired(parts, start_monitor)
    monitor_address = f"127.0.0.1:{monitor_server.server.port}"
    where = ["--registry", parts.registry_address, "--scheduler", f"127.0.0.1:{scheduler.server.port}",
             "--monitor", monitor_address]  # fmt: skip
    demo = subprocess.run(
        [sys.executable, "-m", "mlaas.cli", "demo", "drift", "--strict", "node-a", *where], capture_output=True,
        text=True, env=tool_env(), timeout=300,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    said = demo.stdout
    assert "(STRICT on node node-a)" in said and "labels go to the replica on node-a and stay there" in said
    assert "ROLLED_OUT on node-a" in said and "now serves sea-demo:2" in said
    assert monitor_server.store.label_count(printed_deployment(said)) == (0, 0)


def printed_deployment(said: str) -> str:
    """The deployment id the demo printed."""
    return said.split(" as ", 1)[1].split()[0]
