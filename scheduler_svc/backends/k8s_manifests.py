"""The Kubernetes objects of the mesh's replicas and training jobs, as plain dicts built by pure
functions (validated against the API schemas without a cluster): a Deployment and a Service per
replica, a Job per training job, and the patch that rolls a replica to another model version.

Every object carries labels for the deployment, model, version and tenant; containers get the
replica's CPU and memory as requests and limits, readiness and liveness probes (the kubelet's
native gRPC probe, or the image's health check when the mesh runs TLS), and a non-root security
context. A STRICT replica is pinned with a required node affinity on
`kubernetes.io/hostname`; an OPEN one prefers the node the scheduler chose.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from scheduler_svc.backends import JobSpec, ReplicaSpec, credential
from scheduler_svc.backends.launch import job_args, runtime_args, runtime_env

GRPC_PORT = 8001
BULK_PORT = 8002
HTTP_PORT = 8000
METRICS_PORT = 9090
HOSTNAME = "kubernetes.io/hostname"
GPU = "nvidia.com/gpu"


def object_name(identifier: str) -> str:
    """A DNS-1123 name from a replica or job id."""
    name = re.sub(r"[^a-z0-9-]", "-", identifier.lower()).strip("-")
    return f"mlaas-{name}"[:63].rstrip("-")


def _label(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63].strip("-._") or "none"


def _labels(component: str, deployment_id: str, model_ref: str, tenant: str) -> dict[str, str]:
    name, _, version = model_ref.partition(":")
    return {
        "app.kubernetes.io/name": "mlaas",
        "app.kubernetes.io/part-of": "mlaas",
        "app.kubernetes.io/component": component,
        "mlaas.io/deployment": _label(deployment_id),
        "mlaas.io/model": _label(name),
        "mlaas.io/version": _label(version or "latest"),
        "mlaas.io/tenant": _label(tenant),
    }


def _resources(cpu_millicores: int, memory_bytes: int) -> dict:
    amounts = {"cpu": f"{max(cpu_millicores, 1)}m", "memory": str(max(memory_bytes, 1 << 20))}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _affinity(node: str, strict: bool) -> dict:
    term = {"matchExpressions": [{"key": HOSTNAME, "operator": "In", "values": [node]}]}
    if strict:
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": term}]}}


# The Secret of the mesh's tokens file (see k8s/), mounted by runtimes when the mesh runs with auth.
TOKENS_SECRET = "mlaas-tokens"
TOKENS_DIR = "/etc/mlaas"
# The mesh's TLS Secret (see k8s/: `tls.crt`, `tls.key`, `ca.crt`, as cert-manager writes them),
# mounted by runtimes and training jobs when the mesh runs TLS.
TLS_DIR = "/etc/mlaas-tls"


@dataclass(frozen=True)
class MountedTLS:
    """The Secret a pod mounts to serve TLS with `tls.crt` (which also serves as its client
    certificate) and to trust `ca.crt`; `mutual`: it also requires client certificates."""

    secret: str
    mutual: bool = False

    def env(self) -> dict[str, str]:
        variables = {
            "MLAAS_TLS_CERT": f"{TLS_DIR}/tls.crt",
            "MLAAS_TLS_KEY": f"{TLS_DIR}/tls.key",
            "MLAAS_TLS_CA": f"{TLS_DIR}/ca.crt",
            "MLAAS_TLS_CLIENT_CERT": f"{TLS_DIR}/tls.crt",
            "MLAAS_TLS_CLIENT_KEY": f"{TLS_DIR}/tls.key",
        }
        if self.mutual:
            variables["MLAAS_TLS_CLIENT_CA"] = f"{TLS_DIR}/ca.crt"
        return variables

    def mount(self) -> tuple[dict, dict]:
        """(volumeMount, volume): the key readable by the pod's group only (fsGroup)."""
        volume = {"name": "tls", "secret": {"secretName": self.secret, "defaultMode": 0o440}}
        return {"name": "tls", "mountPath": TLS_DIR, "readOnly": True}, volume


def _without_tls(env: Mapping[str, str]) -> dict[str, str]:
    """The scheduler's own certificate paths mean nothing in another pod."""
    return {k: v for k, v in env.items() if not k.startswith("MLAAS_TLS_")}


def env_entries(variables: Mapping[str, str]) -> list[dict]:
    """A container's env. Its MLAAS_TOKEN is the credential minted for this replica or job alone
    (one model version, one deployment's feedback), not a token of the mesh's roles."""
    return [{"name": name, "value": value} for name, value in sorted(variables.items())]


POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001}  # the image's user
SECURITY = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": False,
    "capabilities": {"drop": ["ALL"]},
}


def replica_manifests(
    spec: ReplicaSpec,
    image: str,
    namespace: str,
    env: Mapping[str, str],
    tenant: str = "",
    tokens_secret: str = "",
    tls: MountedTLS | None = None,
) -> tuple[dict, dict]:
    """(apps/v1 Deployment, v1 Service) for one replica. With `tokens_secret` (the mesh runs
    with auth), the runtime mounts that Secret's tokens.yaml and asks callers for a bearer token.
    With `tls`, it serves TLS (mTLS) from that Secret, and its probes, which the kubelet's gRPC
    probe cannot make over TLS, run the image's health check in the container."""
    name = object_name(spec.replica_id)
    labels = {**_labels("runtime", spec.deployment_id, spec.model_ref, tenant), "mlaas.io/replica": name}
    probe = {"grpc": {"port": GRPC_PORT}, "periodSeconds": 5, "failureThreshold": 3}
    if tls is not None:
        health = ["python", "-m", "mlaas.services.healthcheck", f"127.0.0.1:{GRPC_PORT}"]
        probe = {"exec": {"command": health}, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3}
    variables = {
        **_without_tls(env),
        **runtime_env(spec),
        "MLAAS_HOST": "0.0.0.0",
        "MLAAS_ALLOW_OPEN_REMOTE": "true",  # the pod network; auth comes from MLAAS_AUTH_TOKENS_FILE
    }
    if tokens_secret:
        variables["MLAAS_AUTH_TOKENS_FILE"] = f"{TOKENS_DIR}/tokens.yaml"
    if tls is not None:
        variables |= tls.env()
    container = {
        "name": "runtime",
        "image": image,
        "command": ["python", "-m", "inference_svc"],
        "args": runtime_args(spec, GRPC_PORT, HTTP_PORT, BULK_PORT, metrics_port=METRICS_PORT),
        "env": env_entries(variables),
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT},
            {"name": "http", "containerPort": HTTP_PORT},
            {"name": "bulk", "containerPort": BULK_PORT},
            {"name": "metrics", "containerPort": METRICS_PORT},
        ],
        "resources": _resources(spec.cpu_millicores, spec.memory_bytes),
        "readinessProbe": {**probe, "initialDelaySeconds": 2},
        "livenessProbe": {**probe, "initialDelaySeconds": 30},
        "securityContext": SECURITY,
    }
    pod: dict = {
        "containers": [container],
        "affinity": _affinity(spec.node, spec.strict),
        "securityContext": POD_SECURITY,
    }
    mounts, volumes = [], []
    if tokens_secret:
        mounts.append({"name": "tokens", "mountPath": TOKENS_DIR, "readOnly": True})
        volumes.append({"name": "tokens", "secret": {"secretName": tokens_secret}})
    if tls is not None:
        mount, volume = tls.mount()
        mounts.append(mount)
        volumes.append(volume)
    if volumes:
        container["volumeMounts"] = mounts
        pod["volumes"] = volumes
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"mlaas.io/replica": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"mlaas.io/replica": name},
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "appProtocol": "grpc"},
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "appProtocol": "http"},
                {"name": "bulk", "port": BULK_PORT, "targetPort": "bulk", "appProtocol": "grpc"},
            ],
        },
    }
    return deployment, service


def roll_patch(deployment: dict) -> dict:
    """A strategic merge patch moving a replica's Deployment to `deployment`, its manifest for the
    new model version: the Deployment's rolling update (maxSurge 1, maxUnavailable 0) then starts
    a pod of the new version and stops the old one once the new one is ready, behind the same
    Service."""
    return {
        "metadata": {"labels": deployment["metadata"]["labels"]},
        "spec": {"template": deployment["spec"]["template"]},
    }


def job_manifest(
    spec: JobSpec, image: str, namespace: str, env: Mapping[str, str], jobs_dir: str, tls: MountedTLS | None = None
) -> dict:
    """batch/v1 Job fitting a recipe. The jobs directory is a volume shared with the scheduler
    (claim `mlaas-jobs`); the job mounts only its own directory of it (a subPath), where the
    scheduler sees it too. With `tls`, it reaches the registry over TLS with the certificates of
    that Secret."""
    name = object_name(spec.job_id)
    own = os.path.dirname(spec.output_path)
    if os.path.dirname(own) != jobs_dir.rstrip("/"):
        raise ValueError(f"a job's directory {own} must be directly in the jobs directory {jobs_dir}")
    labels = _labels("training", spec.job_id, spec.model_ref, "")
    mounts = [{"name": "jobs", "mountPath": own, "subPath": os.path.basename(own)}]
    container = {
        "name": "train",
        "image": image,
        "command": ["python", "-m", "mlaas.retraining.train_job"],
        "args": job_args(spec, env.get("MLAAS_REGISTRY_ADDR", "")),
        "env": env_entries(_without_tls(env) | (tls.env() if tls else {}) | credential(spec.token)),
        "resources": _resources(spec.cpu_millicores, spec.memory_bytes),
        "securityContext": SECURITY,
        "volumeMounts": mounts,
    }
    volumes = [{"name": "jobs", "persistentVolumeClaim": {"claimName": "mlaas-jobs"}}]
    if tls is not None:
        mount, volume = tls.mount()
        mounts.append(mount)
        volumes.append(volume)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "affinity": _affinity(spec.node, False),
                    "securityContext": POD_SECURITY,
                    "volumes": volumes,
                },
            },
        },
    }
