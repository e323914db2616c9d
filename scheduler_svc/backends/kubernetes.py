"""Replicas as Kubernetes Deployments with a Service each, training jobs as Kubernetes Jobs,
through the `kubernetes` Python client.

Every object carries labels for the deployment, model, version and tenant; containers get the
replica's CPU and memory as requests and limits, readiness and liveness probes (the kubelet's
native gRPC probe, or the image's health check when the mesh runs TLS), and a non-root security
context. A STRICT replica is pinned with a required node affinity on
`kubernetes.io/hostname`; an OPEN one prefers the node the scheduler chose. Replica and job
status come from watches on the namespace's runtime Deployments and training Jobs (a read only
for an object a watch has not seen yet). The manifests are plain dicts built by pure functions,
so they can be validated without a cluster.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from mlaas.quantities import parse_cpu, parse_memory, parse_quantity
from scheduler_svc.backends import JobSpec, ReplicaSpec, ReplicaStatus, RollState, credential
from scheduler_svc.placement import Node

log = logging.getLogger(__name__)
GRPC_PORT = 8001
HTTP_PORT = 8000
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
        health = ["python", "-m", "mlaas.healthcheck", f"127.0.0.1:{GRPC_PORT}"]
        probe = {"exec": {"command": health}, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3}
    variables = {
        **_without_tls(env),
        "MLAAS_DEPLOYMENT_ID": spec.deployment_id,
        "MLAAS_FEEDBACK_MODE": "summaries" if spec.strict else "records",
        "MLAAS_HOST": "0.0.0.0",
        "MLAAS_ALLOW_OPEN_REMOTE": "true",  # the pod network; auth comes from MLAAS_AUTH_TOKENS_FILE
        **credential(spec.token),
    }
    if tokens_secret:
        variables["MLAAS_AUTH_TOKENS_FILE"] = f"{TOKENS_DIR}/tokens.yaml"
    if tls is not None:
        variables |= tls.env()
    container = {
        "name": "runtime",
        "image": image,
        "command": ["python", "-m", "inference_svc"],
        "args": [
            "--model",
            spec.model_ref,
            "--port",
            str(GRPC_PORT),
            "--http-port",
            str(HTTP_PORT),
            "--metrics-port",
            "9090",
        ],
        "env": env_entries(variables),
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT},
            {"name": "http", "containerPort": HTTP_PORT},
            {"name": "metrics", "containerPort": 9090},
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


def roll_state_of(deployment) -> RollState:
    """What `kubectl rollout status` would say of a V1Deployment."""
    status = deployment.status
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            return RollState(problem=f"the rolling update made no progress: {condition.message}")
    wanted = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    if (status.observed_generation or 0) < (deployment.metadata.generation or 0):
        return RollState()  # the controller has not seen the change yet
    updated = status.updated_replicas or 0
    done = updated >= wanted and (status.replicas or 0) <= updated and (status.available_replicas or 0) >= updated
    return RollState(done=done)


def job_manifest(
    spec: JobSpec, image: str, namespace: str, env: Mapping[str, str], jobs_dir: str, tls: MountedTLS | None = None
) -> dict:
    """batch/v1 Job fitting a recipe; the jobs directory is a shared volume (claim `mlaas-jobs`)
    mounted where the scheduler and the Monitor see it too. With `tls`, it reaches the registry
    over TLS with the certificates of that Secret."""
    name = object_name(spec.job_id)
    labels = _labels("training", spec.job_id, spec.model_ref, "")
    registry = env.get("MLAAS_REGISTRY_ADDR", "")
    files = ["--input", spec.input_path, "--output", spec.output_path]
    container = {
        "name": "train",
        "image": image,
        "command": ["python", "-m", "mlaas.train_job"],
        "args": ["--registry", registry, "--model", spec.model_ref, *files],
        "env": env_entries(_without_tls(env) | (tls.env() if tls else {}) | credential(spec.token)),
        "resources": _resources(spec.cpu_millicores, spec.memory_bytes),
        "securityContext": SECURITY,
        "volumeMounts": [{"name": "jobs", "mountPath": jobs_dir}],
    }
    volumes = [{"name": "jobs", "persistentVolumeClaim": {"claimName": "mlaas-jobs"}}]
    if tls is not None:
        mount, volume = tls.mount()
        container["volumeMounts"].append(mount)
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


def node_of(item) -> Node:
    """A scheduler node from a V1Node (its allocatable resources and labels)."""
    allocatable = item.status.allocatable or {}
    return Node(
        item.metadata.name,
        (
            parse_cpu(allocatable.get("cpu", "0")),
            parse_memory(allocatable.get("memory", "0")),
            int(parse_quantity(allocatable.get(GPU, "0"))),
        ),
        labels=dict(item.metadata.labels or {}),
    )


class ObjectWatch(threading.Thread):
    """Follows one kind of the mesh's objects in the namespace (runtime Deployments, training
    Jobs) with a watch, so that the reconcile loop's and the job checks' status reads (every
    replica or job, every second) come from a cache instead of the API server. Each (re)start
    lists first, as Kubernetes informers do: an object deleted while no watch ran is found gone,
    and the watch goes on from the list's resourceVersion."""

    def __init__(self, list_objects, namespace: str, component: str, stop: threading.Event, timeout_seconds=60):
        super().__init__(name=f"k8s-watch-{component}", daemon=True)
        self._list = list_objects
        self._namespace = namespace
        self._selector = f"app.kubernetes.io/component={component}"
        self._stopping = stop
        self._timeout = timeout_seconds
        self.present: dict[str, object] = {}  # name -> the object as last seen
        self.deleted: set[str] = set()

    def run(self) -> None:
        from kubernetes import watch

        while not self._stopping.is_set():
            try:
                since = self._relist()
                events = watch.Watch().stream(
                    self._list, self._namespace, label_selector=self._selector, timeout_seconds=self._timeout,
                    resource_version=since,
                )  # fmt: skip
                for event in events:
                    item = event["object"]
                    if event["type"] == "DELETED":
                        self.present.pop(item.metadata.name, None)
                        self.deleted.add(item.metadata.name)
                    else:
                        self.present[item.metadata.name] = item
                        self.deleted.discard(item.metadata.name)
                    if self._stopping.is_set():
                        return
            except Exception:  # the API server went away for a moment: watch again
                log.warning("watching %s failed; watching again", self._selector, exc_info=True)
                self._stopping.wait(1.0)
            self._stopping.wait(0.1)  # a watch that ended at once must not become a busy loop

    def _relist(self) -> str:
        """Replaces what is present by what the API lists; returns the list's resourceVersion."""
        listed = self._list(self._namespace, label_selector=self._selector)
        present = {item.metadata.name: item for item in listed.items}
        self.deleted.update(set(self.present) - set(present))
        self.deleted.difference_update(present)
        self.present = present
        return listed.metadata.resource_version

    def seen(self, name: str) -> bool:
        return name in self.present or name in self.deleted


class KubernetesBackend:
    name = "kubernetes"
    restarts_replicas = True  # the kubelet restarts a pod whose gRPC liveness probe fails

    def __init__(
        self,
        api_client,
        namespace: str,
        image: str,
        env: Mapping[str, str],
        jobs_dir: str,
        tokens_secret: str = "",
        tls: MountedTLS | None = None,
    ):
        from kubernetes import client

        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._namespace = namespace
        self._image = image
        self._env = dict(env)  # for the containers: MLAAS_REGISTRY_ADDR, MLAAS_MONITOR_ADDR, ...
        self._jobs_dir = jobs_dir
        self._tokens_secret = tokens_secret  # runtimes ask for tokens from this Secret, if set
        self._tls = tls  # runtimes and jobs use TLS from this Secret, if set
        self._stop = threading.Event()
        self.watch = ObjectWatch(self._apps.list_namespaced_deployment, namespace, "runtime", self._stop)
        self.job_watch = ObjectWatch(self._batch.list_namespaced_job, namespace, "training", self._stop)
        self.watch.start()
        self.job_watch.start()

    def close(self) -> None:
        self._stop.set()

    def _manifests(self, spec: ReplicaSpec) -> tuple[dict, dict]:
        return replica_manifests(
            spec, self._image, self._namespace, self._env, tokens_secret=self._tokens_secret, tls=self._tls
        )

    def create(self, spec: ReplicaSpec) -> ReplicaStatus:
        deployment, service = self._manifests(spec)
        self._apps.create_namespaced_deployment(self._namespace, deployment)
        self._core.create_namespaced_service(self._namespace, service)
        name = deployment["metadata"]["name"]
        host = f"{name}.{self._namespace}.svc"
        return ReplicaStatus(
            spec.replica_id, f"{host}:{GRPC_PORT}", True, handle=name, http_endpoint=f"{host}:{HTTP_PORT}"
        )

    def roll(self, replica: ReplicaStatus, spec: ReplicaSpec) -> None:
        patch = roll_patch(self._manifests(spec)[0])
        self._apps.patch_namespaced_deployment(
            replica.handle, self._namespace, patch, _content_type="application/strategic-merge-patch+json"
        )

    def roll_state(self, replica: ReplicaStatus) -> RollState:
        return roll_state_of(self._apps.read_namespaced_deployment_status(replica.handle, self._namespace))

    def start_job(self, spec: JobSpec) -> ReplicaStatus:
        job = job_manifest(spec, self._image, self._namespace, self._env, self._jobs_dir, self._tls)
        self._batch.create_namespaced_job(self._namespace, job)
        return ReplicaStatus(spec.job_id, "", True, handle=job["metadata"]["name"])

    def status(self, replica: ReplicaStatus) -> ReplicaStatus:
        """From the watches; a read only for an object they have not seen yet."""
        from kubernetes.client.exceptions import ApiException

        watch = self.watch if replica.endpoint else self.job_watch
        if watch.seen(replica.handle):
            found = watch.present.get(replica.handle)
        else:
            read = (
                self._apps.read_namespaced_deployment_status
                if replica.endpoint
                else self._batch.read_namespaced_job_status
            )
            try:
                found = read(replica.handle, self._namespace)
            except ApiException as err:
                if err.status != 404:
                    raise
                found = None
        if found is None:
            return ReplicaStatus(replica.replica_id, replica.endpoint, False, None, replica.handle)
        if replica.endpoint:  # a replica runs while its Deployment exists
            return ReplicaStatus(replica.replica_id, replica.endpoint, True, None, replica.handle)
        status = found.status  # None until the job controller has written one
        succeeded, failed = (status.succeeded or 0, status.failed or 0) if status is not None else (0, 0)
        code = 0 if succeeded else 1 if failed else None
        return ReplicaStatus(replica.replica_id, "", code is None, code, replica.handle)

    def logs(self, replica: ReplicaStatus, lines: int = 100) -> str:
        pods = self._core.list_namespaced_pod(self._namespace, label_selector=f"mlaas.io/replica={replica.handle}")
        return "\n".join(
            self._core.read_namespaced_pod_log(pod.metadata.name, self._namespace, tail_lines=lines)
            for pod in pods.items
        )

    def delete(self, replica: ReplicaStatus, grace_seconds: float = 10.0) -> None:
        from kubernetes.client.exceptions import ApiException

        removals = (
            [self._apps.delete_namespaced_deployment, self._core.delete_namespaced_service]
            if replica.endpoint
            else [self._batch.delete_namespaced_job]
        )
        for remove in removals:
            try:
                remove(replica.handle, self._namespace, grace_period_seconds=int(grace_seconds))
            except ApiException as err:
                if err.status != 404:
                    raise

    def nodes(self) -> list[Node]:
        return [node_of(item) for item in self._core.list_node().items]
