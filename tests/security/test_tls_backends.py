"""Runtimes and training jobs the scheduler starts elsewhere than as local children (which
inherit its environment) serve and call TLS with the mesh's certificates: Kubernetes pods mount
the mesh's TLS Secret and probe with the image's health check (the kubelet's gRPC probe cannot
speak TLS); Docker containers mount the certificate files read-only."""

from __future__ import annotations

import os

import kubernetes_validate

from scheduler_svc.app import container_env
from scheduler_svc.backends import JobSpec, ReplicaSpec
from scheduler_svc.backends.docker import runtime_options, tls_mounts
from scheduler_svc.backends.k8s_manifests import TLS_DIR, MountedTLS, job_manifest, replica_manifests
from scheduler_svc.settings import SchedulerSettings

K8S_VERSION = "1.30.0"
SPEC = ReplicaSpec("d-1a2b-3c4d5e", "d-1a2b", "cpu-1", "iris:3", 1000, 2**28)
# What the scheduler's own pod has: paths that mean nothing in another pod.
SCHEDULER_ENV = {
    "MLAAS_REGISTRY_ADDR": "mlaas-registry:50051",
    "MLAAS_TLS_CA": "/scheduler/only/ca.crt",
    "MLAAS_TLS_CLIENT_CERT": "/scheduler/only/tls.crt",
    "MLAAS_TLS_CLIENT_KEY": "/scheduler/only/tls.key",
}


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_a_runtime_of_a_mtls_mesh_mounts_the_tls_secret():
    deployment, _ = replica_manifests(
        SPEC, "mlaas:dev", "mlaas", SCHEDULER_ENV, tokens_secret="mlaas-tokens", tls=MountedTLS("mlaas-tls", True)
    )
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = _env(container)
    assert env["MLAAS_TLS_CERT"] == env["MLAAS_TLS_CLIENT_CERT"] == f"{TLS_DIR}/tls.crt"
    assert env["MLAAS_TLS_KEY"] == env["MLAAS_TLS_CLIENT_KEY"] == f"{TLS_DIR}/tls.key"
    assert env["MLAAS_TLS_CA"] == env["MLAAS_TLS_CLIENT_CA"] == f"{TLS_DIR}/ca.crt"
    assert {"name": "tls", "mountPath": TLS_DIR, "readOnly": True} in container["volumeMounts"]
    assert {"name": "tls", "secret": {"secretName": "mlaas-tls", "defaultMode": 0o440}} in pod["volumes"]
    assert len(pod["volumes"]) == 2  # the tokens too
    for probe in (container["readinessProbe"], container["livenessProbe"]):
        assert probe["exec"]["command"] == ["python", "-m", "mlaas.services.healthcheck", "127.0.0.1:8001"]
        assert "grpc" not in probe


def test_a_runtime_of_a_plaintext_mesh_keeps_no_tls_paths():
    deployment, _ = replica_manifests(SPEC, "mlaas:dev", "mlaas", SCHEDULER_ENV)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert not [name for name in _env(container) if name.startswith("MLAAS_TLS_")]
    assert container["readinessProbe"]["grpc"] == {"port": 8001}
    server_only, _ = replica_manifests(SPEC, "mlaas:dev", "mlaas", {}, tls=MountedTLS("mlaas-tls"))
    assert "MLAAS_TLS_CLIENT_CA" not in _env(server_only["spec"]["template"]["spec"]["containers"][0])


def test_a_training_job_reaches_the_registry_with_the_tls_secret():
    own = "/var/lib/mlaas/jobs/j-77-0123"
    spec = JobSpec("j-77", "cpu-1", "iris:3", f"{own}/input.npz", f"{own}/model.onnx", 1000, 2**30)
    job = job_manifest(spec, "mlaas:dev", "mlaas", SCHEDULER_ENV, "/var/lib/mlaas/jobs", MountedTLS("mlaas-tls", True))
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    env = _env(pod["containers"][0])
    assert env["MLAAS_TLS_CA"] == f"{TLS_DIR}/ca.crt" and env["MLAAS_TLS_CLIENT_CERT"] == f"{TLS_DIR}/tls.crt"
    assert {"name": "tls", "secret": {"secretName": "mlaas-tls", "defaultMode": 0o440}} in pod["volumes"]
    jobs = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "jobs")
    assert jobs == {"name": "jobs", "mountPath": own, "subPath": "j-77-0123"}  # its own directory, no other job's
    plain = job_manifest(spec, "mlaas:dev", "mlaas", SCHEDULER_ENV, "/var/lib/mlaas/jobs")
    assert not [n for n in _env(plain["spec"]["template"]["spec"]["containers"][0]) if n.startswith("MLAAS_TLS_")]


def test_the_secret_name_is_a_setting():
    env = {"MLAAS_REDIS_URL": "redis://x"}
    assert SchedulerSettings.from_env(env).k8s_tls_secret == "mlaas-tls"
    assert SchedulerSettings.from_env({**env, "MLAAS_K8S_TLS_SECRET": "mesh-certs"}).k8s_tls_secret == "mesh-certs"


def test_containers_get_the_mesh_tls_files_read_only(tmp_path):
    files = {name: str(tmp_path / f"{name}.pem") for name in ("MLAAS_TLS_CERT", "MLAAS_TLS_KEY", "MLAAS_TLS_CA")}
    env = container_env({**files, "MLAAS_MONITOR_ADDR": "127.0.0.1:50053", "HOME": "/root", "MLAAS_DATA_DIR": "/x"})
    assert env == {**files, "MLAAS_MONITOR_ADDR": "127.0.0.1:50053"}  # never the scheduler's whole environment
    assert tls_mounts(env) == {path: {"bind": path, "mode": "ro"} for path in files.values()}
    options = runtime_options(env)
    assert options["volumes"] == tls_mounts(env)
    assert options["user"] == f"{os.getuid()}:{os.getgid()}"  # the keys are readable by their owner only
    assert options["environment"]["MLAAS_TLS_KEY"] == files["MLAAS_TLS_KEY"]
    assert runtime_options({"MLAAS_MONITOR_ADDR": "127.0.0.1:50053"}) == {}
