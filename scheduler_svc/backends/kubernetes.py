"""Replicas as Kubernetes Deployments with a Service each, training jobs as Kubernetes Jobs,
through the `kubernetes` Python client; the objects themselves are built in k8s_manifests.py.
Replica and job status come from watches on the namespace's runtime Deployments and training
Jobs (a read only for an object a watch has not seen yet).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from mlaas.quantities import parse_cpu, parse_memory, parse_quantity
from scheduler_svc.backends import JobSpec, ReplicaSpec, ReplicaStatus, RollState
from scheduler_svc.backends.k8s_manifests import (
    BULK_PORT,
    GPU,
    GRPC_PORT,
    HTTP_PORT,
    MountedTLS,
    job_manifest,
    replica_manifests,
    roll_patch,
)  # fmt: skip
from scheduler_svc.placement import Node

log = logging.getLogger(__name__)


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
        self.present: dict[str, Any] = {}  # name -> the object as last seen (a V1Deployment or a V1Job)
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
        # The client sends a dict body as it is; its types name only its model classes.
        self._apps.create_namespaced_deployment(self._namespace, deployment)  # type: ignore[arg-type]
        self._core.create_namespaced_service(self._namespace, service)  # type: ignore[arg-type]
        name = deployment["metadata"]["name"]
        host = f"{name}.{self._namespace}.svc"
        return ReplicaStatus(
            spec.replica_id, f"{host}:{GRPC_PORT}", True, handle=name,
            http_endpoint=f"{host}:{HTTP_PORT}", bulk_endpoint=f"{host}:{BULK_PORT}",
        )  # fmt: skip

    def roll(self, replica: ReplicaStatus, spec: ReplicaSpec) -> None:
        patch = roll_patch(self._manifests(spec)[0])
        self._apps.patch_namespaced_deployment(
            replica.handle, self._namespace, patch, _content_type="application/strategic-merge-patch+json"
        )

    def roll_state(self, replica: ReplicaStatus) -> RollState:
        return roll_state_of(self._apps.read_namespaced_deployment_status(replica.handle, self._namespace))

    def start_job(self, spec: JobSpec) -> ReplicaStatus:
        job = job_manifest(spec, self._image, self._namespace, self._env, self._jobs_dir, self._tls)
        self._batch.create_namespaced_job(self._namespace, job)  # type: ignore[arg-type]  # a dict, as above
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
        names = [pod.metadata.name for pod in pods.items if pod.metadata and pod.metadata.name]  # all are
        return "\n".join(self._core.read_namespaced_pod_log(name, self._namespace, tail_lines=lines) for name in names)

    def node_store(self, deployment_id: str) -> str | None:
        """None: a replica's node store is in its pod, out of a job's reach."""
        return None

    def forget(self, deployment_id: str) -> None:
        """Nothing: a replica's node store is in its pod's filesystem, removed with it."""

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
