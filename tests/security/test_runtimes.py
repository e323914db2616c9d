"""The runtimes behind a two-tenant mesh, attacked as the other tenant would: straight to the
replica of a deployment it cannot use (its address is no secret), through every model rpc and
every repository rpc; and revocation, as a lease holder that let its lease go."""

from __future__ import annotations

import json
import queue
import re
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mlaas import errors
from mlaas.client import MonitorClient, RegistryClient
from mlaas.export import register_sklearn
from mlaas.inference_client import DeploymentInference, InferenceClient, build_request
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.services.auth import RUNTIME, MeshKey
from mlaas.v1 import monitor_pb2, monitor_pb2_grpc, node_pb2, runtime_pb2, runtime_pb2_grpc, scheduler_pb2, types_pb2
from tests.conftest import feedback_record, process_memory
from tests.inference_svc.conftest import served_once_free
from tests.security.conftest import TOKENS


@pytest.fixture(scope="module")
def models(mesh, iris_model):
    """alpha's private `alpha-secret` and public `alpha-shared`."""
    model, X, y = iris_model
    with mesh.registry_as("alpha") as alpha:
        register_sklearn(alpha, model, "alpha-secret", X, visibility=types_pb2.VISIBILITY_PRIVATE)
        register_sklearn(alpha, LogisticRegression(max_iter=300).fit(X, y), "alpha-shared", X)
    return X


def _metadata(tenant: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {TOKENS[tenant]}")]


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code(), refused.value.details()


def test_another_tenant_gets_nothing_from_a_private_deployments_runtime(mesh, models, deployed):
    X = models
    endpoint = deployed("alpha", "alpha-secret").endpoints[0]
    with grpc.insecure_channel(endpoint) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        beta = _metadata("beta")
        not_here = (grpc.StatusCode.NOT_FOUND, "model 'alpha-secret' is not loaded here")
        for call in (
            lambda: stub.ModelInfer(build_request("alpha-secret", {"X": X[:1]}), metadata=beta),
            lambda: stub.ModelMetadata(oip.ModelMetadataRequest(name="alpha-secret"), metadata=beta),
            lambda: stub.ModelConfig(oip.ModelConfigRequest(name="alpha-secret"), metadata=beta),
            lambda: stub.ModelStatistics(oip.ModelStatisticsRequest(name="alpha-secret"), metadata=beta),
        ):
            assert _code(call) == not_here
        # The same answer as for a model that is nowhere: nothing tells the two apart.
        missing = _code(lambda: stub.ModelMetadata(oip.ModelMetadataRequest(name="nothing"), metadata=beta))
        assert missing == (grpc.StatusCode.NOT_FOUND, "model 'nothing' is not loaded here")
        assert (
            _code(lambda: stub.ModelStatistics(oip.ModelStatisticsRequest(), metadata=beta))[0]
            == grpc.StatusCode.NOT_FOUND
        )
        assert not stub.ModelReady(oip.ModelReadyRequest(name="alpha-secret"), metadata=beta).ready
        stream = stub.ModelStreamInfer(iter([build_request("alpha-secret", {"X": X[:1]})]), metadata=beta)
        no_model = (grpc.StatusCode.NOT_FOUND, "no model is loaded here for you")
        assert _code(lambda: list(stream)) == no_model
        # A stream that sends nothing is refused as it opens: it holds none of the runtime's calls.
        idle: queue.Queue = queue.Queue()
        stream = stub.ModelStreamInfer(iter(idle.get, None), metadata=beta, timeout=10)
        assert _code(lambda: next(stream)) == no_model
        idle.put(None)

        # The repository and the load are the scheduler's: no tenant unloads, loads, lists or
        # reads the load (on a shared deployment, every tenant's traffic), alpha included.
        load_stub = runtime_pb2_grpc.RuntimeServiceStub(channel)
        for who in (_metadata("beta"), _metadata("alpha")):
            code, _ = _code(lambda w=who: load_stub.GetLoad(runtime_pb2.GetLoadRequest(), metadata=w))
            assert code == grpc.StatusCode.PERMISSION_DENIED
            unload = oip.RepositoryModelUnloadRequest(model_name="alpha-secret")
            load = oip.RepositoryModelLoadRequest(model_name="alpha-shared:1")
            for method, request in (("RepositoryModelUnload", unload), ("RepositoryModelLoad", load),
                                    ("RepositoryIndex", oip.RepositoryIndexRequest())):  # fmt: skip
                code, _ = _code(lambda m=method, r=request, w=who: getattr(stub, m)(r, metadata=w))
                assert code == grpc.StatusCode.PERMISSION_DENIED
        assert stub.ServerReady(oip.ServerReadyRequest(), metadata=beta).ready  # nothing was unloaded

    with InferenceClient(endpoint, token=TOKENS["alpha"]) as alpha:
        assert alpha.infer("alpha-secret", {"X": X[:2]})["label"].shape == (2,)
        assert [r.error for r in alpha.stream("alpha-secret", [{"X": X[:1]}])] == [""]


def test_over_rest_too_another_tenant_gets_nothing_and_the_owner_everything(mesh, models, deployed):
    """The same rules on the replica's HTTP/REST endpoint, which the scheduler publishes beside
    its gRPC one."""
    X = models
    deployment = deployed("alpha", "alpha-secret")
    assert len(deployment.http_endpoints) == len(deployment.endpoints) == 1
    base = f"http://{deployment.http_endpoints[0]}"
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": X[0].tolist()}]}

    def call(path: str, token: str | None, data: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(base + path, data=None if data is None else json.dumps(data).encode())
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    not_here = (404, {"error": "model 'alpha-secret' is not loaded here"})
    for path, data in (("/infer", body), ("", None), ("/config", None), ("/stats", None)):
        assert call(f"/v2/models/alpha-secret{path}", TOKENS["beta"], data) == not_here, path
    assert call("/v2/models/alpha-secret/ready", TOKENS["beta"])[0] == 503
    assert call("/v2/models/nothing", TOKENS["beta"]) == (404, {"error": "model 'nothing' is not loaded here"})
    for who in ("alpha", "beta"):  # the repository is the scheduler's
        assert call("/v2/repository/models/alpha-secret/unload", TOKENS[who], {})[0] == 403
        assert call("/v2/repository/index", TOKENS[who], {})[0] == 403
    assert call("/v2/models/alpha-secret/infer", None, body)[0] == 401
    status, answer = call("/v2/models/alpha-secret/infer", TOKENS["alpha"], body)
    assert status == 200 and answer["outputs"][0]["shape"] == [1]


def test_a_dropped_lease_takes_the_runtime_away_within_seconds(mesh, models, deployed):
    """beta deploys alpha's public model: a lease on alpha's deployment. It infers, unary and
    streaming; once it decommissions (its lease goes), both stop within seconds."""
    X = models
    deployment = _shared_with_beta(deployed)
    endpoint = deployment.endpoints[0]
    request = build_request("alpha-shared", {"X": X[:1]})
    with grpc.insecure_channel(endpoint) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ModelInfer(request, metadata=_metadata("beta")).outputs
        revoked_at = [0.0]

        def requests():  # one request every 50 ms for at most 20 s; the lease goes after 1 s
            started = time.monotonic()
            while time.monotonic() - started < 20:
                if not revoked_at[0] and time.monotonic() - started > 1:
                    with mesh.scheduler_as("beta") as beta_scheduler:
                        beta_scheduler.decommission(deployment.id)
                    revoked_at[0] = time.monotonic()
                yield request
                time.sleep(0.05)

        answered = 0
        with pytest.raises(grpc.RpcError) as ended:
            for reply in stub.ModelStreamInfer(requests(), metadata=_metadata("beta"), timeout=30):
                assert not reply.error_message
                answered += 1
        assert ended.value.code() == grpc.StatusCode.NOT_FOUND and answered > 0
        assert time.monotonic() - revoked_at[0] < 10
        assert _code(lambda: stub.ModelInfer(request, metadata=_metadata("beta")))[0] == grpc.StatusCode.NOT_FOUND
        assert stub.ModelInfer(request, metadata=_metadata("alpha")).outputs  # the owner still can


def test_a_stranger_with_no_token_or_a_forged_one_is_refused(mesh, models, deployed):
    X = models
    endpoint = deployed("alpha", "alpha-secret").endpoints[0]
    with InferenceClient(endpoint) as anonymous, pytest.raises(errors.Unauthenticated):
        anonymous.infer("alpha-secret", {"X": X[:1]})
    forged = "mlaas-scoped.eyJyIjoibWxhYXMtc2NoZWR1bGVyIn0.00"
    with InferenceClient(endpoint, token=forged) as stranger, pytest.raises(errors.Unauthenticated):
        stranger.infer("alpha-secret", {"X": X[:1]})
    assert np.isfinite(X).all()


def test_on_a_shared_deployment_labels_match_only_the_reporters_own_requests(mesh, models, deployed):
    """beta shares alpha's deployment: its labels for alpha's request ids match nothing and say
    nothing (alpha's are as unmatched as ids nobody used), and cannot overwrite alpha's."""
    X = models
    deployment = _shared_with_beta(deployed)
    with grpc.insecure_channel(deployment.endpoints[0]) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        for tenant, ids in (("alpha", ["order-1", "order-2"]), ("beta", ["b-1"])):
            for request_id in ids:
                request = build_request("alpha-shared", {"X": X[:1]})
                request.id = request_id
                stub.ModelInfer(request, metadata=_metadata(tenant))
    with (
        MonitorClient(mesh.monitor, TOKENS["alpha"]) as alpha,
        MonitorClient(mesh.monitor, TOKENS["beta"]) as beta,
    ):
        deadline = time.monotonic() + 90  # a first feedback waits for the detectors' calibration
        while True:  # the runtime sends its records in the background
            try:
                if alpha.report(deployment.id).samples_seen >= 3:
                    break
            except errors.NotFound:
                pass
            assert time.monotonic() < deadline, "the feedback never reached the Monitor"
            time.sleep(0.1)
        guessed = beta.report_labels(deployment.id, [("order-1", "0"), ("never-used", "0"), ("b-1", "0")])
        assert (guessed.accepted, guessed.unmatched) == (3, 2)  # only its own request matched
        owned = alpha.report_labels(deployment.id, [("order-1", "2"), ("order-2", "2")])
        assert (owned.accepted, owned.unmatched) == (2, 0)  # beta's guess took nothing of alpha's


def test_a_strict_deployments_node_takes_labels_only_from_who_may_use_it(mesh, models):
    """Labels of a STRICT deployment go to its replica: the other tenant gets the same NOT_FOUND
    as for inference, a caller without a token nothing, the owner's are kept there; and the
    Monitor refuses them (it never stores one)."""
    X = models
    with mesh.scheduler_as("alpha") as scheduler:
        node = scheduler.nodes()[0].name
        deployment = scheduler.wait_ready(scheduler.deploy("alpha-secret", strict_node=node).id)
        try:
            endpoint = deployment.endpoints[0]
            with InferenceClient(endpoint, TOKENS["alpha"]) as owner:
                owner.infer("alpha-secret", {"X": X[:1]}, request_id="a-1")
            labels = [node_pb2.ReportNodeLabelsRequest(
                deployment_id=deployment.id, labels=[monitor_pb2.Label(request_id="a-1", class_label="0")],
            )]  # fmt: skip
            with InferenceClient(endpoint, TOKENS["beta"]) as beta, pytest.raises(errors.NotFound) as refused:
                beta.report_node_labels(labels)
            assert refused.value.message == "no model is loaded here for you"  # as for a stream of a stranger's
            with InferenceClient(endpoint) as nobody, pytest.raises(errors.Unauthenticated):
                nobody.report_node_labels(labels)
            with DeploymentInference(scheduler, deployment.id, TOKENS["alpha"]) as runtime:
                assert runtime.report_labels([("a-1", "0")]).accepted == 1
            with (
                MonitorClient(mesh.monitor, TOKENS["alpha"]) as monitor,
                pytest.raises(errors.FailedPrecondition, match="STRICT"),
            ):
                monitor.report_labels(deployment.id, [("a-1", "0")])
        finally:
            scheduler.decommission(deployment.id)


def _shared_with_beta(deployed) -> scheduler_pb2.Deployment:
    """alpha's `alpha-shared`, READY, with a lease of beta's on it too."""
    deployment = deployed("alpha", "alpha-shared")
    assert deployed("beta", "alpha-shared").id == deployment.id
    return deployment


def test_one_tenant_cannot_hold_all_of_a_bulk_workers_calls(models, deployed):
    """The bulk worker serves 2 calls at once: two idle streams of one tenant once shut every
    other tenant's big requests out. A tenant now holds at most half of them."""
    X = models
    deployment = _shared_with_beta(deployed)
    bulk = deployment.bulk_endpoints[0]
    with grpc.insecure_channel(bulk) as channel:
        held: queue.Queue = queue.Queue()
        stream = oip_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(
            iter(held.get, None), metadata=_metadata("alpha"), timeout=60
        )
        held.put(build_request("alpha-shared", {"X": X[:1]}))
        assert next(stream).error_message == ""  # alpha holds one call with an idle stream
        with InferenceClient(bulk, TOKENS["alpha"]) as alpha, pytest.raises(errors.ResourceExhausted, match="share"):
            alpha.infer("alpha-shared", {"X": X[:1]})
        with InferenceClient(bulk, TOKENS["beta"]) as beta:
            answer = served_once_free(lambda: beta.infer("alpha-shared", {"X": X[:1]}), "alpha's refused call")
            assert answer["label"].shape == (1,)
        held.put(None)
        list(stream)


def test_idle_streams_on_the_bulk_port_are_closed_and_the_owner_gets_its_calls_back(models, deployed):
    """Two tenants' streams that send nothing once held both of the bulk worker's calls for the
    connection's age (125 s): each is now closed after MLAAS_STREAM_IDLE_SECONDS (10 s in this
    mesh), however long its connection lives, and the owner's request is served (that a stream
    with an answer still due is never idle: tests/inference_svc/test_units.py)."""
    X = models
    deployment = _shared_with_beta(deployed)
    bulk = deployment.bulk_endpoints[0]
    with grpc.insecure_channel(bulk) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        silent = [
            stub.ModelStreamInfer(iter(queue.Queue().get, None), metadata=_metadata(tenant), timeout=120)
            for tenant in ("alpha", "beta")
        ]
        started = time.monotonic()
        for stream in silent:
            code, details = _code(lambda stream=stream: next(stream))
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "sent nothing for 10 s (MLAAS_STREAM_IDLE_SECONDS)" in details
        assert time.monotonic() - started < 60  # not the connection's age
    with InferenceClient(bulk, TOKENS["alpha"]) as alpha:
        answer = served_once_free(lambda: alpha.infer("alpha-shared", {"X": X[:1]}), "the closed idle streams")
        assert answer["label"].shape == (1,)


def test_a_hot_swap_hands_the_runtime_the_new_versions_credential_and_no_more(mesh, models, deployed, iris_model):
    """An owner's update swaps the version inside the running replica: it fetches version 2 with
    the credential minted for version 2 (its own was for version 1 alone) and reports version 2's
    feedback with it, which the Monitor takes. The credential comes only with the scheduler's
    load: a tenant's load carrying one is refused like any tenant's load."""
    X = models
    _, _, y = iris_model
    with mesh.registry_as("alpha") as alpha:
        register_sklearn(alpha, LogisticRegression(max_iter=300).fit(X, y), "alpha-swap", X)
    deployment = deployed("alpha", "alpha-swap")
    with mesh.registry_as("alpha") as alpha:
        register_sklearn(alpha, LogisticRegression(C=0.01, max_iter=300).fit(X, y), "alpha-swap", X)
    with mesh.scheduler_as("alpha") as scheduler:
        scheduler.update(deployment.id, "alpha-swap:2")
        swapped = scheduler.wait_settled(deployment.id)
    assert swapped.model.version == 2 and swapped.endpoints == deployment.endpoints
    assert swapped.replica_status[0].handle == deployment.replica_status[0].handle  # the same process
    with InferenceClient(swapped.endpoints[0], token=TOKENS["alpha"]) as runtime:
        assert runtime.metadata("alpha-swap").versions == ["2"]
        runtime.infer("alpha-swap", {"X": X[:3]})  # feedback of version 2
    with MonitorClient(mesh.monitor, TOKENS["alpha"]) as monitor:
        deadline = time.monotonic() + 90  # a first feedback waits for the detectors' calibration
        while True:  # the runtime sends its records in the background
            try:
                if monitor.report(deployment.id).model_version == 2:
                    break
            except errors.NotFound:
                pass
            assert time.monotonic() < deadline, "version 2's feedback never reached the Monitor"
            time.sleep(0.1)
    # A trial of version 3 in shadow: the runtime fetches it with a credential that names version 2
    # and, for the trial, version 3; the Monitor takes the challenger's answers under it.
    with mesh.registry_as("alpha") as alpha:
        register_sklearn(alpha, LogisticRegression(C=0.1, max_iter=300).fit(X, y), "alpha-swap", X)
    with mesh.scheduler_as("alpha") as scheduler:
        scheduler.start_trial(deployment.id, "alpha-swap:3")
        assert [r.trial_version for r in scheduler.wait_settled(deployment.id).replica_status] == [3]
    with InferenceClient(swapped.endpoints[0], token=TOKENS["alpha"]) as runtime:
        for i in range(40):
            runtime.infer("alpha-swap", {"X": X[i : i + 1]}, request_id=f"trial-{i}")
    with MonitorClient(mesh.monitor, TOKENS["alpha"]) as monitor:
        deadline = time.monotonic() + 90  # a first feedback waits for the detectors' calibration
        while monitor.report_labels(deployment.id, [(f"trial-{i}", str(y[i])) for i in range(40)]).unmatched:
            assert time.monotonic() < deadline, "the trial's feedback never reached the Monitor"
            time.sleep(0.2)
        judged = monitor.report(deployment.id).trial
    assert (judged.champion_version, judged.challenger_version, judged.labels) == (2, 3, 40)
    with grpc.insecure_channel(swapped.endpoints[0]) as channel:
        load = oip.RepositoryModelLoadRequest(model_name="alpha-swap:1")
        load.parameters["mlaas_credential"].string_param = "mlaas-scoped.forged.00"
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        code, _ = _code(lambda: stub.RepositoryModelLoad(load, metadata=_metadata("alpha")))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_a_private_round_reads_onto_a_node_only_the_reference_data_of_the_nodes_owner(mesh, models):
    """A private round fits its shared steps on the model's reference data, on the node: it runs
    for the owner's deployment of its own model (the job's credential may read that data). The
    other tenant cannot start one on its deployment of alpha's public model, whose reference data
    would otherwise land on beta's node (nor can the Monitor: tests/scheduler_svc/test_node_rounds.py)."""
    X = models
    plan = scheduler_pb2.NodeRound(confidence=0.5, epsilon=5.0)
    with mesh.scheduler_as("alpha") as scheduler:
        node = scheduler.nodes()[0].name
        mine = scheduler.wait_ready(scheduler.deploy("alpha-secret", strict_node=node).id)
        try:
            ids = [f"p-{i}" for i in range(len(X))]
            with DeploymentInference(scheduler, mine.id, TOKENS["alpha"]) as runtime:
                assert all(r.error == "" for r in runtime.stream(({"X": X[i : i + 1]} for i in range(len(X))), ids))
                runtime.report_labels([(i, str(label)) for i, label in zip(ids, models_labels(), strict=True)])
            store = mesh.data_dir / "node" / f"{mine.id}.sqlite3"
            deadline = time.monotonic() + 30
            while _matched(store) < len(X):  # the predictions reach the node's store as they drain
                assert time.monotonic() < deadline
                time.sleep(0.2)
            plan.deployment_id = mine.id
            done = scheduler.wait_training_job(scheduler.run_node_round("alpha-secret", plan).id, timeout=180)
            assert done.round_result.epsilon_spent == pytest.approx(5.0) and done.node == node
        finally:
            scheduler.decommission(mine.id)
    with mesh.scheduler_as("beta") as scheduler:
        theirs = scheduler.wait_ready(scheduler.deploy("alpha-shared", strict_node=node).id)
        try:
            plan.deployment_id = theirs.id
            with pytest.raises(errors.PermissionDenied, match="only the owner of alpha-shared may train it"):
                scheduler.run_node_round("alpha-shared", plan)
        finally:
            scheduler.decommission(theirs.id)


def models_labels() -> np.ndarray:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)[1]


def _matched(store) -> int:
    import sqlite3

    if not store.exists():
        return 0
    with sqlite3.connect(store) as db:
        return db.execute("SELECT COUNT(matched) FROM labels").fetchone()[0]


def _credential_of(replica: scheduler_pb2.Replica) -> str:
    """The credential the scheduler minted for a replica, as one who got hold of it would have it:
    read from the replica's memory (a forked replica's environment is not in /proc)."""
    found = {
        token.decode()
        for mapping in process_memory(int(replica.handle))
        for token in re.findall(rb"mlaas-scoped\.[\w-]+\.[\w-]+\.[\w-]+", mapping)
    }
    [credential] = found  # the first, before any renewal
    return credential


def _feedback(deployment_id: str, X) -> monitor_pb2.IngestFeedbackRequest:
    return monitor_pb2.IngestFeedbackRequest(
        deployment_id=deployment_id, records=[feedback_record(X, ["leaked-1", "leaked-2"])]
    )


def test_a_runtimes_credential_expires_is_renewed_and_is_void_once_its_deployment_is_destroyed(mesh, models, tmp_path):
    """A credential lives 30 s in this mesh: the one a replica started with is refused after that,
    while the replica, renewed, goes on feeding the Monitor. Once the deployment is destroyed, a
    credential minted for it that has not expired yet is refused within seconds by the registry and
    the Monitor (it once downloaded the model and fed the monitoring of a destroyed deployment)."""
    X = models
    with mesh.scheduler_as("alpha") as scheduler:  # destroyed below
        deployment = scheduler.wait_ready(scheduler.deploy("alpha-shared").id)
    first = _credential_of(deployment.replica_status[0])
    with RegistryClient(mesh.registry, first) as holder:
        holder.download("alpha-shared:1", tmp_path / "model.onnx")
    deadline = time.monotonic() + 60
    while True:  # past its 30 s and the clock leeway
        try:
            with RegistryClient(mesh.registry, first) as holder:
                holder.download("alpha-shared:1", tmp_path / "again.onnx")
        except errors.Unauthenticated as refused:
            assert "expired" in refused.message
            break
        assert time.monotonic() < deadline, "the credential outlived its lifetime"
        time.sleep(1)
    with MonitorClient(mesh.monitor, TOKENS["alpha"]) as monitor:
        seen = monitor.report(deployment.id).samples_seen if _reported(monitor, deployment.id) else 0
        with InferenceClient(deployment.endpoints[0], TOKENS["alpha"]) as runtime:
            runtime.infer("alpha-shared", {"X": X[:5]})
        # A refused batch is kept and sent again with the renewed credential; on a busy machine
        # (the renewal itself waits for the scheduler's loop) that took more than 30 s once.
        deadline = time.monotonic() + 60
        while not _reported(monitor, deployment.id) or monitor.report(deployment.id).samples_seen <= seen:
            assert time.monotonic() < deadline, "the renewed runtime's feedback never reached the Monitor"
            time.sleep(0.2)

    live = MeshKey.from_file(mesh.data_dir / "mesh.key").mint(RUNTIME, deployment.id, "alpha-shared:1")
    with mesh.scheduler_as("alpha") as scheduler:
        scheduler.decommission(deployment.id)
        deadline = time.monotonic() + 30
        while scheduler.get(deployment.id).state != scheduler_pb2.DEPLOYMENT_STATE_DESTROYED:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    destroyed = time.monotonic()
    with grpc.insecure_channel(mesh.monitor) as channel:
        feed = monitor_pb2_grpc.MonitorServiceStub(channel).IngestFeedback
        while True:  # taken until the Monitor learns of the destruction: seconds at most
            try:
                feed(iter([_feedback(deployment.id, X)]), metadata=[("authorization", f"Bearer {live}")], timeout=10)
                code, details = grpc.StatusCode.OK, "taken"
            except grpc.RpcError as refused:
                code, details = refused.code(), refused.details()
            if code == grpc.StatusCode.UNAUTHENTICATED:
                break
            assert time.monotonic() - destroyed < 10, (code, details)
            time.sleep(0.2)
    assert "is gone" in details
    with RegistryClient(mesh.registry, live) as holder, pytest.raises(errors.Unauthenticated, match="is gone"):
        holder.download("alpha-shared:1", tmp_path / "after.onnx")
    assert time.monotonic() - destroyed < 10


def _reported(monitor: MonitorClient, deployment_id: str) -> bool:
    try:
        monitor.report(deployment_id)
    except errors.NotFound:
        return False
    return True
