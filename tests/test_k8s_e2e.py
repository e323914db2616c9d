"""The mesh on a real Kubernetes cluster, end to end: the dev overlay in a namespace of its own,
a model registered, deployed by the scheduler's Kubernetes backend, served, rolled to a new
version in place, and decommissioned.

It runs only with `MLAAS_K8S_E2E=1` and a kubeconfig (kind, k3d or minikube) whose cluster
already has the image (`MLAAS_K8S_IMAGE`, default `mlaas:local` from `make docker-image`; with
kind: `kind load docker-image mlaas:local`). No cluster can run on the build machines, so there
it is skipped with that reason; the overlay it applies is rendered and validated in every run.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.export import register_sklearn
from mlaas.inference_client import InferenceClient
from mlaas.services.net import free_port
from mlaas.tls import ClientTLS
from mlaas.v1 import scheduler_pb2 as S
from mlaas.v1 import types_pb2
from tests.test_k8s import K8S, VERSION

IMAGE = os.environ.get("MLAAS_K8S_IMAGE", "mlaas:local")
TOKEN = "dev-token"  # the dev overlay's tenant token
SMALL = types_pb2.Resources(cpu_millicores=250, memory_bytes=512 * 2**20)


def e2e_kustomization(work: Path, namespace: str, image: str) -> Path:
    """The dev overlay in `namespace`, running `image`, with the jobs volume ReadWriteOnce (the
    usual single-node test clusters have no ReadWriteMany storage)."""
    name, _, tag = image.rpartition(":")
    scheduler_image = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "mlaas-scheduler"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "scheduler", "env": [{"name": "MLAAS_RUNTIME_IMAGE", "value": image}]}
        ]}}},
    }  # fmt: skip
    jobs_volume = [{"op": "replace", "path": "/spec/accessModes", "value": ["ReadWriteOnce"]}]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        "resources": [os.path.relpath(K8S / "overlays" / "dev", work)],
        "images": [{"name": "mlaas", "newName": name, "newTag": tag}],
        "patches": [
            {"target": {"kind": "Deployment", "name": "mlaas-scheduler"}, "patch": yaml.safe_dump(scheduler_image)},
            {"target": {"kind": "PersistentVolumeClaim", "name": "mlaas-jobs"}, "patch": yaml.safe_dump(jobs_volume)},
        ],
    }
    (work / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return work


def kubectl(*args: str, timeout: float = 600) -> str:
    out = subprocess.run([shutil.which("kubectl") or "kubectl", *args], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
    return out.stdout


def test_the_e2e_overlay_renders_and_validates(tmp_path):
    work = e2e_kustomization(tmp_path, "mlaas-e2e-check", "mlaas:local")
    objects = [o for o in yaml.safe_load_all(kubectl("kustomize", str(work))) if o]
    for manifest in objects:
        kubernetes_validate.validate(manifest, VERSION, strict=True)
    scheduler = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "mlaas-scheduler")
    container = scheduler["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == env["MLAAS_RUNTIME_IMAGE"] == "mlaas:local"
    assert all(o["metadata"].get("namespace") == "mlaas-e2e-check" for o in objects if "Cluster" not in o["kind"])


def _cluster_reason() -> str | None:
    if os.environ.get("MLAAS_K8S_E2E") != "1":
        return "set MLAAS_K8S_E2E=1 with a kubeconfig for a kind, k3d or minikube cluster to run it"
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not Path(kubeconfig.split(os.pathsep)[0]).exists():
        return f"no kubeconfig at {kubeconfig}"
    if shutil.which("kubectl") is None:
        return "kubectl is not on PATH"
    return None


@contextlib.contextmanager
def port_forward(namespace: str, target: str, port: int) -> Iterator[str]:
    """`kubectl port-forward` to a Service; yields the local address once it accepts connections."""
    local = free_port()
    process = subprocess.Popen(
        ["kubectl", "-n", namespace, "port-forward", target, f"{local}:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), timeout=1):
                break
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, f"port-forward to {target} never listened"
            time.sleep(0.3)
        yield f"127.0.0.1:{local}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[str]:
    """The mesh in a fresh namespace; deleted afterwards with everything it created."""
    reason = _cluster_reason()
    if reason:
        pytest.skip(reason)
    namespace = f"mlaas-e2e-{uuid.uuid4().hex[:6]}"
    work = e2e_kustomization(tmp_path_factory.mktemp("k8s-e2e"), namespace, IMAGE)
    kubectl("create", "namespace", namespace)
    try:
        kubectl("apply", "-k", str(work))
        kubectl("-n", namespace, "wait", "--for=condition=complete", "job/mlaas-tls-init", "--timeout=300s")
        for workload in ("statefulset/mlaas-redis", "statefulset/mlaas-registry", "deployment/mlaas-scheduler",
                         "statefulset/mlaas-monitor"):  # fmt: skip
            kubectl("-n", namespace, "rollout", "status", workload, "--timeout=300s")
        yield namespace
    finally:
        subprocess.run(["kubectl", "delete", "-k", str(work), "--wait=false"], capture_output=True, timeout=120)
        subprocess.run(["kubectl", "delete", "namespace", namespace, "--wait=false"], capture_output=True, timeout=120)


def mesh_tls(namespace: str, directory: Path) -> ClientTLS:
    """The CA of the mesh's TLS Secret (made by the dev overlay's Job), to reach it through
    port-forwards on 127.0.0.1 (a name its certificate carries)."""
    ca = directory / "ca.crt"
    ca.write_bytes(
        base64.b64decode(kubectl("-n", namespace, "get", "secret", "mlaas-tls", "-o", "jsonpath={.data.ca\\.crt}"))
    )
    return ClientTLS(str(ca))


def test_deploy_serve_roll_and_decommission_on_a_cluster(cluster, iris_model, tmp_path):
    from kubernetes import client, config

    config.load_kube_config()
    apps, core = client.AppsV1Api(), client.CoreV1Api()
    tls = mesh_tls(cluster, tmp_path)
    model, X, y = iris_model
    second = LogisticRegression(C=0.01, max_iter=300).fit(X, y)
    with (
        port_forward(cluster, "svc/mlaas-registry", 50051) as registry_address,
        port_forward(cluster, "svc/mlaas-scheduler", 50052) as scheduler_address,
        RegistryClient(registry_address, TOKEN, tls=tls) as registry,
        SchedulerClient(scheduler_address, TOKEN, timeout=120, tls=tls) as scheduler,
    ):
        register_sklearn(registry, model, "iris", X, run_resources=SMALL)
        deployment = scheduler.wait_ready(scheduler.deploy("iris").id)
        assert deployment.state == S.DEPLOYMENT_STATE_READY and deployment.backend == "kubernetes"
        name = deployment.replica_status[0].handle
        with port_forward(cluster, f"svc/{name}", 8001) as runtime_address, InferenceClient(
            runtime_address, TOKEN, tls=tls
        ) as runtime:  # fmt: skip
            assert np.array_equal(runtime.infer("iris", {"X": X})["label"], model.predict(X))

        register_sklearn(registry, second, "iris", X, run_resources=SMALL)
        scheduler.update(deployment.id, "iris:2")
        rolled = scheduler.wait_settled(deployment.id)
        assert rolled.state == S.DEPLOYMENT_STATE_READY and rolled.model.version == 2
        assert list(rolled.endpoints) == list(deployment.endpoints)  # rolled in place, behind the same Service
        template = apps.read_namespaced_deployment(name, cluster).spec.template
        assert template.spec.containers[0].args[:2] == ["--model", "iris:2"]
        with port_forward(cluster, f"svc/{name}", 8001) as runtime_address, InferenceClient(
            runtime_address, TOKEN, tls=tls
        ) as runtime:  # fmt: skip
            assert runtime.metadata("iris").versions == ["2"]
            assert np.array_equal(runtime.infer("iris", {"X": X})["label"], second.predict(X))

        scheduler.decommission(deployment.id)
        deadline = time.monotonic() + 120
        while any(
            name in {o.metadata.name for o in listed.items}
            for listed in (apps.list_namespaced_deployment(cluster), core.list_namespaced_service(cluster))
        ):
            assert time.monotonic() < deadline, f"{name} still exists after decommission"
            time.sleep(1)
