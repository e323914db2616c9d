"""The Kubernetes backend against a local fake API server (no Kubernetes API server can run
here): the fake records every request and keeps the objects posted to it, answering as the API
does for the calls the backend makes. What the backend sends is validated against the
Kubernetes 1.30 schemas with kubernetes-validate --strict, as a real API server would."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kubernetes_validate
import pytest
from kubernetes import client

from mlaas.client import SchedulerClient
from mlaas.errors import InvalidArgument
from mlaas.quantities import parse_quantity
from mlaas.v1 import scheduler_pb2 as S
from mlaas.v1.types_pb2 import ModelRef
from scheduler_svc.backends import JobSpec, ReplicaSpec, ReplicaStatus, RollState
from scheduler_svc.backends.k8s_manifests import object_name, replica_manifests
from scheduler_svc.backends.kubernetes import KubernetesBackend

K8S_VERSION = "1.30.0"
NODES = {
    "kind": "NodeList", "apiVersion": "v1", "metadata": {},
    "items": [
        {"metadata": {"name": "gpu-1", "labels": {"pool": "gpu"}},
         "status": {"allocatable": {"cpu": "7500m", "memory": "30Gi", "nvidia.com/gpu": "1"}}},
        {"metadata": {"name": "cpu-1"}, "status": {"allocatable": {"cpu": "4", "memory": "16G"}}},
    ],
}  # fmt: skip


class FakeApi(BaseHTTPRequestHandler):
    objects: dict[str, dict] = {}
    deleted: list[dict] = []
    requests: list[tuple[str, str, dict | None]] = []
    job_status: dict = {}
    deployment_status: dict = {}
    patch_types: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def _answer(self, code: int, body: dict | str) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(("POST", self.path, body))
        self.objects[f"{self.path}/{body['metadata']['name']}"] = body
        self._answer(201, body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if "watch=true" in self.path:  # a watch: what exists and what went, then the stream ends
            return self._watch(path)
        self.requests.append(("GET", self.path, None))
        if path == "/api/v1/nodes":
            return self._answer(200, NODES)
        if path.endswith(("/deployments", "/jobs")):  # a list, as a watch's restart asks first
            items = [{**o, "status": self.job_status} if o["kind"] == "Job" else o
                     for k, o in self.objects.items() if k.startswith(path + "/")]  # fmt: skip
            kind = "JobList" if path.endswith("/jobs") else "DeploymentList"
            return self._answer(200, {"kind": kind, "metadata": {"resourceVersion": "7"}, "items": items})
        if path.endswith("/pods"):
            pod = {"metadata": {"name": "runtime-pod"}, "spec": {"containers": []}}
            return self._answer(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]})
        if path.endswith("/log"):
            return self._answer(200, "worker 0 serving iris")
        stored = self.objects.get(path.removesuffix("/status"))
        if stored is None:
            return self._answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404})
        return self._answer(
            200, {**stored, "status": self.job_status if stored["kind"] == "Job" else self.deployment_status}
        )

    def do_PATCH(self):
        """A strategic merge patch, applied as a JSON merge: enough for patches that replace whole
        maps (the backend's replaces the pod template and the labels)."""
        patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(("PATCH", self.path, patch))
        self.patch_types.append(self.headers["Content-Type"])
        stored = self.objects.get(self.path.split("?")[0])
        if stored is None:
            return self._answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404})
        merge(stored, patch)
        stored["metadata"]["generation"] = stored["metadata"].get("generation", 1) + 1
        self._answer(200, stored)

    def _watch(self, collection: str) -> None:
        events = [
            {"type": "ADDED", "object": {**o, "status": self.job_status} if o["kind"] == "Job" else o}
            for k, o in self.objects.items()
            if k.startswith(collection + "/")
        ]
        events += [{"type": "DELETED", "object": o} for o in self.deleted]
        data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_DELETE(self):
        self.requests.append(("DELETE", self.path, None))
        found = self.objects.pop(self.path.split("?")[0], None)
        if found is not None:
            self.deleted.append(found)
        self._answer(200 if found else 404, {"kind": "Status", "apiVersion": "v1", "code": 200 if found else 404})


def merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


@pytest.fixture
def fake_api() -> str:
    FakeApi.objects, FakeApi.deleted, FakeApi.requests, FakeApi.job_status = {}, [], [], {}
    FakeApi.deployment_status, FakeApi.patch_types = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def backend(fake_api):
    configuration = client.Configuration(host=fake_api)
    env = {
        "MLAAS_REGISTRY_ADDR": "mlaas-registry:50051",
        "MLAAS_MONITOR_ADDR": "mlaas-monitor:50053",
    }
    made = KubernetesBackend(client.ApiClient(configuration), "mlaas", "mlaas:dev", env, "/var/lib/mlaas/jobs")
    yield made
    made.close()


def eventually(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def posted(kind: str) -> dict:
    return next(body for method, _, body in FakeApi.requests if method == "POST" and body["kind"] == kind)


@pytest.mark.parametrize("strict", [False, True])
def test_a_replica_is_a_valid_deployment_and_service(backend, strict):
    spec = ReplicaSpec("d-1a2b-3c4d5e", "d-1a2b", "gpu-1", "iris:3", 1500, 512 * 2**20, strict=strict, token="minted")
    status = backend.create(spec)
    deployment, service = posted("Deployment"), posted("Service")
    for manifest in (deployment, service):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    name = object_name(spec.replica_id)
    assert status.endpoint == f"{name}.mlaas.svc:8001" and status.handle == name
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "1500m", "memory": str(512 * 2**20)}
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert container["readinessProbe"]["grpc"] == {"port": 8001} and container["livenessProbe"]["grpc"]
    assert container["args"][:2] == ["--model", "iris:3"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["MLAAS_DEPLOYMENT_ID"] == "d-1a2b" and env["MLAAS_MONITOR_ADDR"] == "mlaas-monitor:50053"
    assert env["MLAAS_TOKEN"] == "minted"  # this replica's own credential (one model version), no role's
    assert env["MLAAS_FEEDBACK_MODE"] == ("summaries" if strict else "records")
    labels = deployment["metadata"]["labels"]
    assert [labels[f"mlaas.io/{k}"] for k in ("deployment", "model", "version")] == ["d-1a2b", "iris", "3"]
    affinity = pod["affinity"]["nodeAffinity"]
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["gpu-1"]}]}
    if strict:  # never anywhere else
        assert affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [term]
    else:
        assert affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"] == term
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]

    assert backend.status(status).running  # asked the API: the watch may not have seen it yet
    assert eventually(lambda: name in backend.watch.present)
    reads = sum(1 for method, path, _ in FakeApi.requests if method == "GET" and path.endswith("/status"))
    assert backend.status(status).running
    assert sum(1 for m, path, _ in FakeApi.requests if m == "GET" and path.endswith("/status")) == reads  # cached
    assert backend.logs(status) == "worker 0 serving iris"
    backend.delete(status)
    assert eventually(lambda: name in backend.watch.deleted)
    deleted = [path for method, path, _ in FakeApi.requests if method == "DELETE"]
    assert deleted == [
        f"/apis/apps/v1/namespaces/mlaas/deployments/{name}?gracePeriodSeconds=10",
        f"/api/v1/namespaces/mlaas/services/{name}?gracePeriodSeconds=10",
    ]
    assert not backend.status(status).running
    backend.delete(status)  # already gone: nothing to do, no error


def test_a_deletion_no_watch_saw_is_found_by_the_next_list(backend):
    """The watch was down when a runtime Deployment went (no DELETED event ever comes): the
    watch's restart lists first and finds it gone instead of keeping it present forever."""
    spec = ReplicaSpec("d-9f8e-7d6c5b", "d-9f8e", "cpu-1", "iris:1", 1000, 2**28)
    status = backend.create(spec)
    name = status.handle
    assert eventually(lambda: name in backend.watch.present)
    FakeApi.objects.pop(f"/apis/apps/v1/namespaces/mlaas/deployments/{name}")  # gone, and no event says so
    assert eventually(lambda: name in backend.watch.deleted and name not in backend.watch.present)
    assert not backend.status(status).running


def test_runtimes_of_a_mesh_with_auth_ask_for_tokens():
    spec = ReplicaSpec("d-1a2b-3c4d5e", "d-1a2b", "cpu-1", "iris:3", 1000, 2**28)
    deployment, _ = replica_manifests(spec, "mlaas:dev", "mlaas", {}, tokens_secret="mlaas-tokens")
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    mount = container["volumeMounts"][0]
    assert env["MLAAS_AUTH_TOKENS_FILE"] == f"{mount['mountPath']}/tokens.yaml" and mount["readOnly"]
    assert pod["volumes"] == [{"name": mount["name"], "secret": {"secretName": "mlaas-tokens"}}]
    open_deployment, _ = replica_manifests(spec, "mlaas:dev", "mlaas", {})
    assert "volumes" not in open_deployment["spec"]["template"]["spec"]


def test_an_update_rolls_the_replica_deployment_in_place(backend):
    """A new version is a patch of the replica's Deployment, whose rolling update (maxSurge 1,
    maxUnavailable 0) replaces the pod behind the same Service; its progress is read as
    `kubectl rollout status` reads it. The fake API server plays the Deployment controller by
    setting the status the test gives it."""
    spec = ReplicaSpec("d-1a2b-3c4d5e", "d-1a2b", "cpu-1", "iris:3", 1000, 2**28)
    status = backend.create(spec)
    asked = len(FakeApi.requests)
    backend.roll(status, dataclasses.replace(spec, model_ref="iris:4"))
    path = f"/apis/apps/v1/namespaces/mlaas/deployments/{status.handle}"
    # The backend's watch may read meanwhile; of what the roll asked, the one change is this patch.
    assert [(m, p) for m, p, _ in FakeApi.requests[asked:] if m != "GET"] == [("PATCH", path)]
    assert FakeApi.patch_types == ["application/strategic-merge-patch+json"]
    rolled = FakeApi.objects[path]
    kubernetes_validate.validate(rolled, K8S_VERSION, strict=True)
    assert rolled["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["--model", "iris:4"]
    assert rolled["metadata"]["labels"]["mlaas.io/version"] == "4"
    assert rolled["spec"]["selector"] == posted("Deployment")["spec"]["selector"]  # same pods' Service
    assert rolled["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}

    progress = [  # (status the controller reports, what the scheduler concludes)
        ({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}, RollState()),
        ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1}, RollState()),
        ({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0}, RollState()),
        ({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}, RollState(True)),
    ]
    for reported, expected in progress:
        FakeApi.deployment_status = reported
        assert backend.roll_state(status) == expected, reported
    stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": 'ReplicaSet "mlaas-d-1a2b-3c4d5e-7f" has timed out progressing.'}  # fmt: skip
    FakeApi.deployment_status = {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "conditions": [stuck]}
    assert backend.roll_state(status).problem == f"the rolling update made no progress: {stuck['message']}"


def test_a_training_job_is_a_valid_job(backend):
    own = "/var/lib/mlaas/jobs/j-77-0123"
    spec = JobSpec("j-77", "cpu-1", "iris:3", f"{own}/input.npz", f"{own}/model.onnx", 1000, 2**30)
    started = backend.start_job(spec)
    job = posted("Job")
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "mlaas.retraining.train_job"]
    assert container["args"] == ["--registry", "mlaas-registry:50051", "--model", "iris:3", "--input",
                                 spec.input_path, "--output", spec.output_path]  # fmt: skip
    assert container["volumeMounts"] == [{"name": "jobs", "mountPath": own, "subPath": "j-77-0123"}]  # its own only
    running = backend.status(ReplicaStatus(spec.job_id, "", True, handle=started.handle))
    assert running.running and running.exit_code is None  # read: the watch may not have seen it yet
    assert eventually(lambda: started.handle in backend.job_watch.present)
    reads = len(FakeApi.requests)
    FakeApi.job_status = {"succeeded": 1}
    assert eventually(lambda: backend.status(started).exit_code == 0)  # from the watch
    FakeApi.job_status = {"failed": 1}
    assert eventually(lambda: backend.status(started).exit_code == 1)
    assert not [r for r in FakeApi.requests[reads:] if r[1].endswith("/status")]  # no reads meanwhile


def test_nodes_come_from_the_nodes_api(backend):
    nodes = {n.name: n for n in backend.nodes()}
    assert nodes["gpu-1"].allocatable == (7500, 30 * 2**30, 1) and nodes["gpu-1"].labels == {"pool": "gpu"}
    assert nodes["cpu-1"].allocatable == (4000, 16 * 10**9, 0)
    # The mesh's one quantity parser reads what the API server may write (mlaas/quantities.py).
    assert parse_quantity("250m") == Decimal("0.25") and parse_quantity("1Ki") == 1024


def test_a_kubernetes_scheduler_places_on_the_cluster_nodes(fake_api, parts, tmp_path, monkeypatch):
    """MLAAS_BACKEND=kubernetes: the kubeconfig (here pointing at the fake) gives the nodes."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": fake_api}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
        "users": [{"name": "me", "user": {"token": "t"}}],
    }))  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    scheduler = parts.start(backend="kubernetes")
    with SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as client_:
        nodes = {n.name: n for n in client_.nodes()}
        assert set(nodes) == {"gpu-1", "cpu-1"} and nodes["gpu-1"].allocatable.gpus == 1
        assert nodes["cpu-1"].backend == "kubernetes"
        with pytest.raises(InvalidArgument, match="backend 'local' is not available here; use 'kubernetes'"):
            client_._call(client_._stub.Deploy, S.DeployRequest(model=ModelRef(name="iris"), backend="local"))
