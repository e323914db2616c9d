"""Trials on real parts: a challenger tried in shadow or as a canary inside the running replica,
judged by the Monitor on the labels of rows both versions answered, then promoted (a hot swap) or
dropped; and the requests a canary takes."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import types

import grpc
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mlaas.client import MonitorClient, RegistryClient, SchedulerClient
from mlaas.demos.scenarios import sea, sea_classifier
from mlaas.errors import FailedPrecondition, InvalidArgument, NotFound
from mlaas.export import register_sklearn
from mlaas.inference_client import DeploymentInference, build_request
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.services.label_store import Labeled
from mlaas.services.net import free_port
from mlaas.services.settings import ServerSettings
from mlaas.v1 import monitor_pb2, scheduler_pb2, types_pb2
from monitor_svc.store import MonitorStore
from monitor_svc.trials import Trials
from tests.conftest import tool_env
from tests.monitor_svc.loops import FINAL, ONE_CPU

pytestmark = pytest.mark.spawns  # see pyproject.toml


M, S = monitor_pb2, scheduler_pb2


@pytest.fixture
def wired(parts, start_monitor):
    """A scheduler and a Monitor that know each other, with sea versions 1 (concept 0), 2 (concept
    3: better after the change) and 3 (worse: constant): `schedulers` and `monitor` (clients) and
    `restart_monitor()` (stops the Monitor and starts another on the same port and data)."""
    X0, _ = sea(2_000, 0, np.random.default_rng(0))
    X3, y3 = sea(2_000, 3, np.random.default_rng(1))
    with RegistryClient(parts.registry_address) as registry:
        register_sklearn(registry, sea_classifier(), "sea", X0, reference_data=X0[:1000], run_resources=ONE_CPU)
        register_sklearn(registry, LogisticRegression().fit(X3, y3), "sea", X3, run_resources=ONE_CPU)
        register_sklearn(registry, LogisticRegression().fit(X3, np.zeros_like(y3) + (X3[:, 0] > 9)), "sea", X3,
                         run_resources=ONE_CPU)  # fmt: skip
    monitor_port = free_port()  # the runtimes report to the Monitor, which ends trials at the scheduler
    scheduler = parts.start(env={"MLAAS_MONITOR_ADDR": f"127.0.0.1:{monitor_port}"})
    scheduler_address = f"127.0.0.1:{scheduler.server.port}"
    server = ServerSettings(port=monitor_port, metrics_port=-1, shutdown_grace_seconds=1)
    running = [start_monitor(parts.registry_address, scheduler_address, server=server)]

    def restart_monitor() -> None:
        running.pop().stop(0)
        running.append(start_monitor(parts.registry_address, scheduler_address, server=server))

    with SchedulerClient(scheduler_address) as schedulers, MonitorClient(f"127.0.0.1:{monitor_port}") as monitor:
        yield types.SimpleNamespace(schedulers=schedulers, monitor=monitor, restart_monitor=restart_monitor)


@pytest.fixture
def mesh(wired):
    """(scheduler client, monitor client) of `wired`."""
    return wired.schedulers, wired.monitor


def serve_and_label(schedulers, monitor, deployment_id: str, n: int, prefix: str, seed: int, concept: int = 3) -> list:
    """n rows of a SEA concept streamed, and their labels reported (a STRICT deployment's to its
    node); the answers."""
    X, y = sea(n, concept, np.random.default_rng(seed))
    ids = [f"{prefix}-{i}" for i in range(n)]
    labels = list(zip(ids, map(str, y), strict=True))
    with DeploymentInference(schedulers, deployment_id) as runtime:
        answers = list(runtime.stream(({"X": X[i : i + 1]} for i in range(n)), ids))
        if schedulers.get(deployment_id).mode == S.PLACEMENT_MODE_STRICT:
            runtime.report_labels(labels)
        else:
            monitor.report_labels(deployment_id, labels)
    assert all(a.error == "" for a in answers)
    return answers


def wait_decided(schedulers, monitor, deployment_id: str) -> tuple[monitor_pb2.TrialJudgement, S.Deployment]:
    """The trial's judgement once the Monitor decided it and the scheduler ended it."""
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(NotFound):  # the runtime's feedback is on its way
            judged = monitor.report(deployment_id).trial
            if judged.outcome and not schedulers.get(deployment_id).trial.version:
                return judged, schedulers.wait_settled(deployment_id)
        assert time.monotonic() < deadline, schedulers.get(deployment_id)
        time.sleep(0.1)


def sea_2_in_shadow(schedulers, monitor, trial_labels: int, **deploy) -> S.Deployment:
    """A deployment of sea:1 (no retraining) trying sea:2 in shadow, once its replicas run it."""
    deployment = schedulers.wait_ready(schedulers.deploy("sea:1", **deploy).id)
    monitor.set_policy(deployment.id, M.MonitorPolicy(auto_retrain=False, trial_labels=trial_labels))
    schedulers.start_trial(deployment.id, "sea:2")
    return schedulers.wait_settled(deployment.id)


def test_a_shadow_that_wins_is_promoted_and_one_that_loses_is_dropped(mesh):
    schedulers, monitor = mesh
    deployment = schedulers.wait_ready(schedulers.deploy("sea:1").id)
    monitor.set_policy(deployment.id, M.MonitorPolicy(auto_retrain=False, trial_labels=200))

    schedulers.start_trial(deployment.id, "sea:2")
    trying = schedulers.wait_settled(deployment.id)
    assert trying.trial == S.Trial(version=2, mode=S.TRIAL_MODE_SHADOW)
    assert [r.trial_version for r in trying.replica_status] == [2] and trying.endpoints == deployment.endpoints
    answers = serve_and_label(schedulers, monitor, deployment.id, 300, "shadowed", 1)
    assert {a.model_version for a in answers} == {"1"}  # a shadow's answers are never returned
    judged, promoted = wait_decided(schedulers, monitor, deployment.id)
    assert judged.outcome.startswith("promoted: ") and "better" in judged.outcome, judged
    assert (judged.champion_version, judged.challenger_version, judged.labels) == (1, 2, 200)
    assert judged.wins > judged.losses
    assert promoted.model.version == 2 and not promoted.HasField("trial")
    assert [(r.model_version, r.trial_version) for r in promoted.replica_status] == [(2, 0)]
    assert promoted.replica_status[0].handle == deployment.replica_status[0].handle  # swapped in place

    schedulers.start_trial(deployment.id, "sea:3")  # constant: worse on every row the others get right
    schedulers.wait_settled(deployment.id)
    serve_and_label(schedulers, monitor, deployment.id, 300, "worse", 2)
    judged, kept = wait_decided(schedulers, monitor, deployment.id)
    assert judged.outcome.startswith("dropped: ") and judged.challenger_version == 3, judged
    assert judged.losses > judged.wins
    assert kept.model.version == 2 and [(r.model_version, r.trial_version) for r in kept.replica_status] == [(2, 0)]


def test_a_canary_answers_its_share_of_the_requests_and_is_judged_on_them(mesh):
    schedulers, monitor = mesh
    deployment = schedulers.wait_ready(schedulers.deploy("sea:1").id)
    monitor.set_policy(deployment.id, M.MonitorPolicy(auto_retrain=False, trial_labels=100))
    command = [sys.executable, "-m", "mlaas.cli", "rollout", deployment.id, "--canary", "sea:2", "--percent", "20",
               "--wait", "--json", "--scheduler", schedulers.address]  # fmt: skip
    started = subprocess.run(command, capture_output=True, text=True, env=tool_env(), timeout=120)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["trial"] == {"version": 2, "mode": "TRIAL_MODE_CANARY", "canary_percent": 20.0}
    # Before any label: once the trial has its labels it may be judged and promoted at once.
    with grpc.insecure_channel(schedulers.get(deployment.id).endpoints[0]) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        pinned = [build_request("sea", {"X": np.zeros((1, 3), np.float32)}, f"pinned-{i}") for i in range(50)]
        for request in pinned:
            request.model_version = "1"  # a request pinned to the served version is no canary's
        assert {stub.ModelInfer(r).model_version for r in pinned} == {"1"}
    n = 1_000
    answers = serve_and_label(schedulers, monitor, deployment.id, n, "canary", 3)
    canary = sum(a.model_version == "2" for a in answers)
    assert {a.model_version for a in answers} == {"1", "2"}
    assert abs(canary - 0.2 * n) < 4 * math.sqrt(n * 0.2 * 0.8), canary  # a binomial bound, 4 sigma
    judged, promoted = wait_decided(schedulers, monitor, deployment.id)
    assert judged.labels == 100 and judged.outcome.startswith("promoted: "), judged  # canary rows only
    assert promoted.model.version == 2


def wait_retraining(monitor, deployment_id: str, states: tuple[int, ...]) -> monitor_pb2.Retraining:
    deadline = time.monotonic() + 180
    while not (found := [r for r in monitor.retrainings(deployment_id) if r.state in states]):
        assert time.monotonic() < deadline, monitor.retrainings(deployment_id)
        time.sleep(0.1)
    return found[0]


def retrained_into_a_trial(schedulers, monitor) -> tuple[S.Deployment, monitor_pb2.Retraining]:
    """A deployment of sea:1 with policy.shadow_retrained whose concept changed, once the round's
    challenger runs in shadow: (the deployment, the round)."""
    deployment = schedulers.wait_ready(schedulers.deploy("sea:1").id)
    policy = M.MonitorPolicy(shadow_retrained=True, trial_labels=100, challenger_confidence=0.5)
    assert monitor.set_policy(deployment.id, policy).shadow_retrained
    serve_and_label(schedulers, monitor, deployment.id, 1_500, "before", 6, concept=0)
    serve_and_label(schedulers, monitor, deployment.id, 1_000, "after", 7)  # the concept changed
    return deployment, wait_retraining(monitor, deployment.id, (M.RETRAINING_STATE_IN_TRIAL,))


def test_a_retrained_challenger_runs_in_shadow_and_serves_once_it_wins_there(wired, parts):
    """policy.shadow_retrained: the round's better challenger is not rolled out on its held-out
    verdict alone; it runs in shadow, and the round ends ROLLED_OUT only when the trial on live
    labels promotes it, even if the Monitor restarted meanwhile."""
    schedulers, monitor = wired.schedulers, wired.monitor
    deployment, trying = retrained_into_a_trial(schedulers, monitor)
    challenger = trying.challenger_version
    shadowing = schedulers.get(deployment.id)
    assert shadowing.model.version == 1 and shadowing.trial == S.Trial(version=challenger, mode=S.TRIAL_MODE_SHADOW)
    # no champion alias yet, or not this one
    with RegistryClient(parts.registry_address) as registry, contextlib.suppress(NotFound):
        assert registry.get("sea@champion").version != challenger
    wired.restart_monitor()  # the round and the trial go on in the next Monitor
    serve_and_label(schedulers, monitor, deployment.id, 300, "live", 8)
    done = wait_retraining(monitor, deployment.id, FINAL)
    assert done.id == trying.id and done.state == M.RETRAINING_STATE_ROLLED_OUT, done
    assert done.reason.endswith("then promoted by its trial on live labels"), done.reason
    assert [s.stage for s in done.stages][-2:] == ["in trial", "serving"]
    assert schedulers.wait_settled(deployment.id).model.version == challenger
    with RegistryClient(parts.registry_address) as registry:
        assert registry.get("sea@champion").version == challenger
    assert monitor.report(deployment.id).trial.outcome.startswith("promoted: ")


def test_a_retrained_challenger_dropped_from_its_trial_ends_the_round_rejected(mesh):
    schedulers, monitor = mesh
    deployment, trying = retrained_into_a_trial(schedulers, monitor)
    schedulers.wait_settled(deployment.id)  # the challenger is loaded
    schedulers.end_trial(deployment.id, promote=False)  # its owner drops it
    done = wait_retraining(monitor, deployment.id, FINAL)
    assert done.id == trying.id and done.state == M.RETRAINING_STATE_REJECTED, done
    assert done.reason.endswith("then dropped from its trial"), done.reason
    assert schedulers.wait_settled(deployment.id).model.version == 1


def test_bad_trials_are_refused(mesh):
    schedulers, _ = mesh
    deployment = schedulers.wait_ready(schedulers.deploy("sea:1").id)
    with pytest.raises(InvalidArgument, match="serves version 1: a trial needs another one"):
        schedulers.start_trial(deployment.id, "sea:1")
    for percent in (-5.0, 100.0, 150.0, float("nan")):
        with pytest.raises(InvalidArgument, match="canary_percent must be above 0 and below 100"):
            schedulers.start_trial(deployment.id, "sea:2", canary_percent=percent)
    with pytest.raises(FailedPrecondition, match="has no trial to end"):
        schedulers.end_trial(deployment.id, promote=True)
    assert schedulers.get(deployment.id).state == S.DEPLOYMENT_STATE_READY  # nothing half-done


def test_a_strict_trial_is_judged_on_its_nodes_counts(mesh):
    """A STRICT deployment's trial: the node keeps both answers and the labels, and sends the
    Monitor only counts per window of labels; those decide, and the winner is promoted."""
    schedulers, monitor = mesh
    deployment = sea_2_in_shadow(schedulers, monitor, 96, strict_node="node-a")
    assert [r.trial_version for r in deployment.replica_status] == [2]
    answers = serve_and_label(schedulers, monitor, deployment.id, 200, "strict", 4)
    assert {a.model_version for a in answers} == {"1"}
    judged, promoted = wait_decided(schedulers, monitor, deployment.id)
    assert judged.outcome.startswith("promoted: ") and "did better on" in judged.outcome, judged
    assert (judged.champion_version, judged.challenger_version) == (1, 2) and judged.labels >= 96
    assert judged.wins > judged.losses and promoted.model.version == 2


def test_a_replica_restarted_during_a_trial_runs_the_challenger_again(mesh):
    schedulers, monitor = mesh
    deployment = sea_2_in_shadow(schedulers, monitor, 200)
    os.kill(int(deployment.replica_status[0].handle), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:  # restarted by the reconciler, and serving again with the challenger loaded
        replica = schedulers.get(deployment.id).replica_status[0]
        if replica.restarts and replica.ready and replica.trial_version == 2:
            break
        assert time.monotonic() < deadline, replica
        time.sleep(0.1)
    serve_and_label(schedulers, monitor, deployment.id, 300, "restarted", 5)
    judged, promoted = wait_decided(schedulers, monitor, deployment.id)  # its shadow answers count
    assert judged.outcome.startswith("promoted: ") and promoted.model.version == 2, judged


def test_a_trial_ends_with_its_deployments_last_lease(mesh):
    """Its owner decommissions a deployment during a trial: the trial ends with the lease (a
    CACHED deployment cannot change, so nothing else could end it), the reconciler unloads the
    challenger from the warm replica, and a deployment revived from the cache runs no trial."""
    schedulers, monitor = mesh
    deployment = sea_2_in_shadow(schedulers, monitor, 200)
    cached = schedulers.decommission(deployment.id)
    assert cached.state == S.DEPLOYMENT_STATE_CACHED and not cached.HasField("trial")
    deadline = time.monotonic() + 30
    while (replica := schedulers.get(deployment.id).replica_status[0]).trial_version:
        assert time.monotonic() < deadline, replica
        time.sleep(0.1)
    assert replica.handle == deployment.replica_status[0].handle  # unloaded in place
    revived = schedulers.wait_ready(schedulers.deploy("sea:1").id)
    assert revived.id == deployment.id and not revived.HasField("trial")
    answers = serve_and_label(schedulers, monitor, deployment.id, 50, "revived", 6)
    assert {a.model_version for a in answers} == {"1"}
    deadline, report = time.monotonic() + 30, None
    while report is None or report.samples_seen < 50:  # the rows' feedback is on its way
        assert time.monotonic() < deadline, report
        time.sleep(0.1)
        with contextlib.suppress(NotFound):
            report = monitor.report(deployment.id)
    assert not report.HasField("trial")  # no shadow answers came


def labeled(numbers: range, prefix: str, version: int, prediction: str, label: str) -> list[Labeled]:
    return [Labeled(n, f"{prefix}-{n}", version, np.zeros(3), prediction, label) for n in numbers]


@pytest.mark.parametrize("settle_seconds", [60.0, 0.0])
def test_a_decided_trial_absorbs_its_late_rows_then_the_same_pair_is_judged_anew(tmp_path, settle_seconds):
    """In process, on a real store: the rows of a decided trial still on their way count for
    nothing (within `settle_seconds` of the decision); after that, labels of the same two versions
    start a new count (the owner tried the pair again), which is decided and ended again."""
    store = MonitorStore(tmp_path / "monitor.sqlite3")
    ended: list[tuple[str, bool]] = []
    done = threading.Event()

    def end(deployment_id: str, promote: bool, champion: int, challenger: int, why: str) -> bool:
        ended.append((deployment_id, promote))
        done.set()
        return True

    trials = Trials(store, end, settle_seconds=settle_seconds)
    policy = M.MonitorPolicy(trial_labels=20, challenger_confidence=0.95)
    monitor = types.SimpleNamespace(
        deployment_id="d-1", policy=policy, context=types.SimpleNamespace(task=types_pb2.TASK_CLASSIFICATION)
    )
    trials.shadowed("d-1")

    def label(start: int, prefix: str) -> None:
        rows = labeled(range(start, start + 20), prefix, 1, "0", "1")  # the served version wrong, the challenger right
        store.add_shadow_predictions("d-1", [x.request_id for x in rows], 2, ["1"] * len(rows))
        done.clear()
        trials.observe(monitor, rows)

    label(0, "first")
    assert done.wait(10) and ended == [("d-1", True)]
    label(20, "later")
    if settle_seconds:  # still settling: absorbed, the judgement stays as it was
        assert not done.wait(0.5) and ended == [("d-1", True)] and trials.status("d-1").labels == 20
    else:  # a new trial of the same pair
        assert done.wait(10) and ended == [("d-1", True)] * 2
    judged = trials.status("d-1")
    assert judged.outcome.startswith("promoted: ") and (judged.champion_version, judged.challenger_version) == (1, 2)


def test_a_restarted_monitor_counts_on_and_ends_what_it_had_decided(tmp_path):
    """In process, on a real store: a trial's labels counted before a restart still count after
    it; a trial decided but not ended at the scheduler (it gave up) is ended by the next start,
    and one that was ended is not ended again."""
    path = tmp_path / "monitor.sqlite3"
    calls: list[tuple[str, bool]] = []
    answer = {"over": False}
    ended = threading.Event()

    def end(deployment_id: str, promote: bool, champion: int, challenger: int, why: str) -> bool:
        calls.append((deployment_id, promote))
        ended.set()
        return answer["over"]

    policy = M.MonitorPolicy(trial_labels=20, challenger_confidence=0.95)
    monitor = types.SimpleNamespace(
        deployment_id="d-1", policy=policy, context=types.SimpleNamespace(task=types_pb2.TASK_CLASSIFICATION)
    )

    def label(trials: Trials, store: MonitorStore, start: int, count: int) -> None:
        rows = labeled(range(start, start + count), "row", 1, "0", "1")
        store.add_shadow_predictions("d-1", [x.request_id for x in rows], 2, ["1"] * len(rows))
        trials.observe(monitor, rows)

    store = MonitorStore(path)
    trials = Trials(store, end)
    trials.shadowed("d-1")  # as IngestFeedback does with a challenger's answers
    label(trials, store, 0, 12)
    store.close()

    store = MonitorStore(path)
    trials = Trials(store, end)  # knows d-1 had a trial: its labels are looked up
    assert trials.status("d-1").labels == 12
    label(trials, store, 12, 8)
    assert ended.wait(10) and calls == [("d-1", True)] and trials.status("d-1").labels == 20
    deadline = time.monotonic() + 10
    while json.loads(dict(store.every_trial())["d-1"])["judgement"] == "":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    store.close()

    answer["over"], ended = True, threading.Event()
    store = MonitorStore(path)
    trials = Trials(store, end)
    trials.resume()  # the scheduler did not end it: again
    assert ended.wait(10) and calls == [("d-1", True)] * 2
    deadline = time.monotonic() + 10
    while not json.loads(dict(store.every_trial())["d-1"])["ended"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    store.close()

    store = MonitorStore(path)
    Trials(store, end).resume()  # over: nothing to end
    store.close()
    assert calls == [("d-1", True)] * 2
