"""The reconcile loop: keeps the replicas of READY and CACHED deployments alive.

Every interval it looks at each replica. One whose process has exited, or that fails its gRPC
health check `unhealthy_checks` times in a row (then it is killed), leaves the endpoints and is
restarted on the same port after an exponential backoff (base, 2 x base, 4 x base ... up to
`backoff_cap`); it rejoins the endpoints once healthy. As with Kubernetes' CrashLoopBackOff, a
replica that served `backoff_reset` since its last start is back to the base delay (its restart
count, shown to users, keeps growing); the time it took to start does not count, so a slow
start on a busy machine does not hide a crash loop. On a platform that restarts unhealthy
replicas itself (Kubernetes), an unhealthy replica only leaves the endpoints until it serves
again; one whose Deployment is gone is still recreated. Each step is an event in the deployment's
stream. A deployment is skipped while a rollout holds its lock, so several scheduler processes
may run this loop side by side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mlaas.errors import Aborted, NotFound
from mlaas.services.net import HealthProbe, port_is_free
from mlaas.v1 import scheduler_pb2
from scheduler_svc.backends import heals_itself
from scheduler_svc.lifecycle import Lifecycle
from scheduler_svc.replica_models import ReplicaModels
from scheduler_svc.replicas import (
    Replicas,
    as_status,
    endpoint_port,
    publish_endpoints,
    record_started,
    require_replicas,
)
from scheduler_svc.states import WATCHED
from scheduler_svc.store import DeploymentStore

S = scheduler_pb2


@dataclass
class ReconcileSettings:
    interval_seconds: float = 1.0
    start_timeout_seconds: float = 120.0
    unhealthy_checks: int = 3
    backoff_seconds: float = 1.0
    backoff_cap_seconds: float = 60.0
    backoff_reset_seconds: float = 600.0


@dataclass
class _Seen:
    """What this loop remembers about one replica between rounds."""

    started_at: float
    recent_restarts: int  # restarts since it last served backoff_reset; sets the next delay
    serving_since: float | None = None  # first answer SERVING since its last start
    failed_checks: int = 0
    restart_at: float | None = None  # set when found down
    answer: str | None = None  # a health answer of this round not acted on yet


def _set_serving(
    deployment: scheduler_pb2.Deployment, replica_id: str, ready: bool, trial_version: int | None = None
) -> None:
    for replica in deployment.replica_status:
        if replica.id == replica_id:
            replica.ready = ready
            if trial_version is not None:
                replica.trial_version = trial_version
    publish_endpoints(deployment)


class Reconciler:
    def __init__(
        self,
        store: DeploymentStore,
        replicas: Replicas,
        lifecycle: Lifecycle,
        settings: ReconcileSettings,
        models: ReplicaModels,
    ):
        self._store = store
        self._replicas = replicas
        self._models = models
        self._lifecycle = lifecycle
        self._settings = settings
        self._seen: dict[str, _Seen] = {}
        self._probe = HealthProbe()

    def stop_all(self, detail: str) -> None:
        """Stops every replica of the READY and CACHED deployments, which stay READY and CACHED,
        out of the endpoints: the mesh shuts down, and its next start brings them back."""

        def out_of_the_endpoints(d: scheduler_pb2.Deployment) -> None:
            for replica in d.replica_status:
                replica.ready = False
            publish_endpoints(d)

        for deployment in self._store.list(WATCHED):
            self._replicas.remove(deployment.replica_status)
            self._store.update(deployment.id, out_of_the_endpoints, detail=detail)

    def bring_back(self) -> None:
        """At start: the replicas of READY and CACHED deployments whose processes are gone (the
        mesh was shut down, or this machine restarted) start again at once, with no backoff."""
        now = time.monotonic()
        for deployment in self._store.list(WATCHED):
            for replica in deployment.replica_status:
                if not self._replicas.backend.status(as_status(replica)).running:
                    self._seen[replica.id] = _Seen(started_at=now, recent_restarts=0, restart_at=now)

    def reconcile_once(self) -> None:
        present: set[str] = set()
        endpoints: set[str] = set()
        for deployment in self._store.list(WATCHED):
            if all(self._fine(deployment, r) for r in deployment.replica_status):
                present.update(r.id for r in deployment.replica_status)
                endpoints.update(r.endpoint for r in deployment.replica_status)
                continue  # the common case needs no lock and writes nothing
            lock = self._lifecycle.deployment_lock(deployment.id, seconds=30)
            if not lock.acquire(blocking=False):
                continue  # a rollout is changing it
            try:
                deployment = self._store.get(deployment.id)
                if deployment.state in WATCHED:
                    for replica in deployment.replica_status:
                        present.add(replica.id)
                        endpoints.add(replica.endpoint)
                        self._check(deployment, replica)
            finally:
                lock.release()
        for gone in set(self._seen) - present:
            del self._seen[gone]
        self._probe.keep_only(endpoints)

    def _fine(self, deployment: scheduler_pb2.Deployment, replica: scheduler_pb2.Replica) -> bool:
        """A ready replica that is running and serving the deployment's trial (or none), known to
        this loop and not due a restart (then there is nothing to do, and its deployment is not
        locked)."""
        seen = self._seen.get(replica.id)
        if seen is None or seen.restart_at is not None or not replica.ready:
            return False
        if replica.trial_version != deployment.trial.version:
            return False
        if not self._replicas.backend.status(as_status(replica)).running:
            return False
        seen.answer = self._probe.check(replica.endpoint)
        if seen.answer != "SERVING":
            return False  # the locked look uses this answer rather than waiting on a second check
        seen.answer, seen.failed_checks = None, 0
        seen.serving_since = seen.serving_since or time.monotonic()
        return True

    def _check(self, deployment: scheduler_pb2.Deployment, replica: scheduler_pb2.Replica) -> None:
        now = time.monotonic()
        # First seen (or seen again by another scheduler): assume its restarts are recent.
        seen = self._seen.setdefault(replica.id, _Seen(started_at=now, recent_restarts=replica.restarts))
        if seen.restart_at is None:
            problem = self._problem(deployment, replica, seen, now)
            if problem is None:
                return
            if seen.serving_since is not None and now - seen.serving_since >= self._settings.backoff_reset_seconds:
                seen.recent_restarts = 0
            delay = min(self._settings.backoff_seconds * 2**seen.recent_restarts, self._settings.backoff_cap_seconds)
            seen.restart_at = now + delay
            self._store.update(
                deployment.id, lambda d: _set_serving(d, replica.id, False),
                detail=f"replica {replica.id} {problem}; restart {replica.restarts + 1} in {delay:.1f}s",
            )  # fmt: skip
        if now < seen.restart_at:
            return

        # Its old ports where they are still free, so that its endpoints stay the same.
        def kept(endpoint: str) -> int:
            port = endpoint_port(endpoint)
            return port if port and port_is_free(port) else 0

        ports = (kept(replica.endpoint), kept(replica.http_endpoint), kept(replica.bulk_endpoint))
        spec = self._replicas.spec(deployment, replica, ports)
        started = self._replicas.backend.create(spec)
        seen.restart_at, seen.started_at, seen.failed_checks, seen.serving_since = None, now, 0, None
        seen.recent_restarts += 1

        def restarted(d: scheduler_pb2.Deployment) -> None:
            require_replicas(d, [replica.id])
            for r in d.replica_status:
                if r.id == replica.id:
                    record_started(r, started)
                    r.restarts += 1

        try:
            self._store.update(
                deployment.id, restarted, detail=f"replica {replica.id} restarted on {started.endpoint}",
                only_from=WATCHED,
            )  # fmt: skip
        except (Aborted, NotFound):  # destroyed meanwhile (evicted, expired): nothing else would stop it
            self._replicas.backend.delete(started)

    def _sync_trial(self, deployment: scheduler_pb2.Deployment, replica: scheduler_pb2.Replica) -> tuple[int, str]:
        """A serving replica runs the deployment's trial like the others, or none once it ended
        (a replica that served again after a restart, one whose trial ended with its deployment's
        last lease): (the challenger it runs, a note for the event)."""
        wanted = deployment.trial.version
        if not wanted:
            if replica.trial_version and not self._models.end_trial(deployment, [replica]):
                return replica.trial_version, ", still with a trial's challenger (its unload failed; tried again)"
            return 0, ", with no trial's challenger" if replica.trial_version else ""
        if self._models.start_trial(deployment, [replica]):
            return wanted, f", with the trial's challenger (version {wanted})"
        return 0, f", without the trial's challenger (version {wanted} did not load; see the scheduler's log)"

    def _problem(
        self, deployment: scheduler_pb2.Deployment, replica: scheduler_pb2.Replica, seen: _Seen, now: float
    ) -> str | None:
        """None while the replica is fine (or still starting); otherwise what is wrong with it,
        after making sure its process is gone."""
        status = self._replicas.backend.status(as_status(replica))
        if not status.running:
            self._replicas.backend.delete(as_status(replica))  # whatever the process left behind
            return "exited" + (f" with code {status.exit_code}" if status.exit_code is not None else "")
        answer, seen.answer = seen.answer or self._probe.check(replica.endpoint), None
        if answer == "SERVING":
            seen.failed_checks = 0
            seen.serving_since = seen.serving_since or now
            # Back after a restart, or its trial ended (with the last lease) or began meanwhile.
            if not replica.ready or replica.trial_version != deployment.trial.version:
                trial, detail = self._sync_trial(deployment, replica)
                again = "" if replica.ready else " serves again"
                self._store.update(
                    deployment.id, lambda d: _set_serving(d, replica.id, True, trial),
                    detail=f"replica {replica.id}{again}{detail}",
                )  # fmt: skip
            return None
        if not replica.ready:  # (re)starting: it has start_timeout to become healthy
            if heals_itself(self._replicas.backend) or now - seen.started_at < self._settings.start_timeout_seconds:
                return None
            problem = f"did not become healthy within {self._settings.start_timeout_seconds:.0f}s ({answer})"
        else:
            seen.failed_checks += 1
            if seen.failed_checks < self._settings.unhealthy_checks:
                return None
            if heals_itself(self._replicas.backend):  # its platform restarts it: no second restart
                self._store.update(
                    deployment.id, lambda d: _set_serving(d, replica.id, False),
                    detail=f"replica {replica.id} failed {seen.failed_checks} health checks in a row ({answer}); "
                    f"out of the endpoints until {self._replicas.backend.name} has it serving again",
                )  # fmt: skip
                return None
            problem = f"failed {seen.failed_checks} health checks in a row ({answer}) and was stopped"
        self._replicas.backend.delete(as_status(replica), grace_seconds=2.0)
        return problem
