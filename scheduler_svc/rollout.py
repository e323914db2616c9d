"""Scale and UpdateDeployment as one convergence: an UPDATING deployment wants `replicas`
replicas of version `model.version`.

Serving replicas of another version first swap to the target version inside their processes
(replica_models.py: seconds, no new process, no endpoint change). On a backend whose platform rolls a
replica itself (Kubernetes), they move to the new version in place instead, behind their
unchanged endpoints. What is still missing then starts beside the old ones (a surge), the
endpoints switch only once they all serve, and the old or surplus replicas drain last (SIGTERM:
each finishes what it has in flight and tells stream clients to reconnect), so there is never a
moment without a ready replica. Running it again after a crash is safe: ready replicas of the
target version are kept, half-started ones are replaced. If the new replicas cannot be placed or
never serve, the deployment goes back to what it was serving, with the reason in its events.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection

from mlaas.errors import Aborted
from mlaas.v1 import scheduler_pb2
from scheduler_svc.backends import rolls_in_place
from scheduler_svc.lifecycle import Lifecycle, ready_or_cached
from scheduler_svc.placer import Placer
from scheduler_svc.replica_models import ReplicaModels
from scheduler_svc.replicas import Replicas, new_replica, publish_endpoints
from scheduler_svc.store import DeploymentStore

log = logging.getLogger(__name__)
S = scheduler_pb2
UPDATING = {S.DEPLOYMENT_STATE_UPDATING}


def _without(deployment: scheduler_pb2.Deployment, replica_ids: Collection[str]) -> None:
    kept = [r for r in deployment.replica_status if r.id not in replica_ids]
    deployment.ClearField("replica_status")
    deployment.replica_status.extend(kept)


def _to_move(deployment: scheduler_pb2.Deployment) -> list[scheduler_pb2.Replica]:
    """Serving replicas of other versions than the target, up to the wanted number of replicas."""
    target = deployment.model.version
    serving_target = sum(1 for r in deployment.replica_status if r.ready and r.model_version == target)
    others = [r for r in deployment.replica_status if r.ready and r.model_version != target]
    return others[: max(deployment.replicas - serving_target, 0)]


def _serving(replica_ids: Collection[str], version: int) -> Callable[[scheduler_pb2.Deployment], None]:
    """The change that records these replicas as serving `version`."""

    def change(deployment: scheduler_pb2.Deployment) -> None:
        for replica in deployment.replica_status:
            if replica.id in replica_ids:
                replica.model_version = version

    return change


def _serve_from(deployment: scheduler_pb2.Deployment, replica_ids: Collection[str]) -> None:
    """Only these replicas take traffic (the others are about to drain)."""
    for replica in deployment.replica_status:
        replica.ready = replica.ready and replica.id in replica_ids
    publish_endpoints(deployment)


class Rollout:
    def __init__(
        self, store: DeploymentStore, replicas: Replicas, placer: Placer, lifecycle: Lifecycle, lock_seconds: float,
        models: ReplicaModels,
    ):  # fmt: skip
        self._models = models
        self._store = store
        self._replicas = replicas
        self._placer = placer
        self._lifecycle = lifecycle
        self._lock_seconds = lock_seconds

    def converge(self, deployment: scheduler_pb2.Deployment) -> None:
        with self._lifecycle.deployment_lock(deployment.id, self._lock_seconds):
            deployment = self._store.get(deployment.id)
            if deployment.state != S.DEPLOYMENT_STATE_UPDATING:
                return
            try:
                self._converge(deployment)
            except Aborted as err:  # destroyed meanwhile (the mesh shut down): nothing more to do
                log.info("rollout of %s stopped: %s", deployment.id, err.message)

    def _converge(self, d: scheduler_pb2.Deployment) -> None:
        target = d.model.version
        old_versions = {r.model_version for r in d.replica_status}
        half_started = [r for r in d.replica_status if r.model_version == target and not r.ready]
        if half_started:  # left by a rollout that was interrupted
            self._replicas.remove(half_started)
            d = self._store.update(d.id, lambda x: _without(x, {r.id for r in half_started}), only_from=UPDATING)
        if not rolls_in_place(self._replicas.backend):
            d = self._swap_in_place(d)
        if rolls_in_place(self._replicas.backend):
            problem = self._roll_in_place(d)
            if problem:
                self._give_up(d.id, problem)
                return
            d = self._store.get(d.id)
        missing = d.replicas - sum(1 for r in d.replica_status if r.model_version == target and r.ready)
        if missing > 0:
            problem = self._add(d, missing)
            if problem:
                self._give_up(d.id, problem)
                return
            d = self._store.get(d.id)
        keep = {r.id for r in d.replica_status if r.model_version == target and r.ready}
        keep = set(sorted(keep)[: d.replicas])
        leaving = [r for r in d.replica_status if r.id not in keep]
        if leaving:
            d = self._store.update(
                d.id, lambda x: _serve_from(x, keep), detail=f"serving version {target} on {len(keep)} replica(s); "
                f"draining {len(leaving)}", only_from=UPDATING,
            )  # fmt: skip
            self._replicas.remove(leaving)
        d, trial = self._sync_trial(d)
        done = (
            f"rolled to version {target}" if old_versions - {target} else f"{len(keep)} replica(s) of version {target}"
        )
        done = done if old_versions - {target} else trial or done

        def settle(x: scheduler_pb2.Deployment) -> None:
            _without(x, {r.id for r in leaving})
            _serve_from(x, keep)

        d = self._store.update(d.id, settle, ready_or_cached, done, only_from=UPDATING)
        self._lifecycle.reshare(d, old_versions)

    def _sync_trial(self, d: scheduler_pb2.Deployment) -> tuple[scheduler_pb2.Deployment, str]:
        """The serving replicas run the deployment's trial, or none any more; (the deployment,
        what changed, if anything). A trial no replica could start is dropped, with the reason."""
        wanted = d.trial.version
        serving = [r for r in d.replica_status if r.ready]
        ending = [r for r in serving if r.trial_version and not wanted]
        starting = [r for r in serving if wanted and r.trial_version != wanted]
        if not (ending or starting):
            return d, ""
        ended = self._models.end_trial(d, ending)
        started = self._models.start_trial(d, starting)
        mode = S.TrialMode.Name(d.trial.mode).removeprefix("TRIAL_MODE_").lower()
        detail = (
            f"trying version {wanted} as a {mode} beside version {d.model.version} on {len(started)} replica(s)"
            if started
            else f"trial ended: {len(ended)} replica(s) serve version {d.model.version} alone"
        )
        if starting and not started:
            detail = f"trial of version {wanted} dropped: no replica could load it (see the scheduler's log)"

        def record(x: scheduler_pb2.Deployment) -> None:
            if starting and not started:
                x.ClearField("trial")
            for replica in x.replica_status:
                if replica.id in ended:
                    replica.trial_version = 0
                if replica.id in started:
                    replica.trial_version = wanted

        return self._store.update(d.id, record, only_from=UPDATING), detail

    def _swap_in_place(self, d: scheduler_pb2.Deployment) -> scheduler_pb2.Deployment:
        """Serving replicas of other versions (up to the wanted number) swap to the target version
        in their processes; the surge below then starts only what did not."""
        target, swapping = d.model.version, _to_move(d)
        swapped = self._models.swap(d, swapping, target) if swapping else set()
        if not swapped:
            return d
        detail = f"swapped {len(swapped)} replica(s) to version {target} in place"
        return self._store.update(d.id, _serving(swapped, target), detail=detail, only_from=UPDATING)

    def _roll_in_place(self, d: scheduler_pb2.Deployment) -> str | None:
        """On a backend that rolls replicas itself, serving replicas of other versions (up to the
        wanted number) move to the target version in place, keeping their endpoints; the surge
        below then only adds what is still missing. None on success, otherwise why not."""
        target, rolling = d.model.version, _to_move(d)
        if not rolling:
            return None
        detail = f"rolling {len(rolling)} replica(s) to version {target} in place"
        d = self._store.update(d.id, lambda x: None, detail=detail, only_from=UPDATING)
        problem = self._replicas.roll(d, rolling, target)
        if problem:
            return f"rolling update failed and was rolled back: {problem}"
        self._store.update(d.id, _serving({r.id for r in rolling}, target), only_from=UPDATING)
        return None

    def _add(self, d: scheduler_pb2.Deployment, count: int) -> str | None:
        """Starts `count` replicas of the target version beside the others; None once they all
        serve, otherwise why not (and they are removed again)."""

        def record(nodes: tuple[str, ...]) -> tuple[scheduler_pb2.Deployment, list[str]]:
            new = [new_replica(d, node) for node in nodes]
            detail = f"starting {len(new)} replica(s) of version {d.model.version} on {', '.join(nodes)}"
            recorded = self._store.update(
                d.id, lambda x: x.replica_status.extend(new), detail=detail, only_from=UPDATING
            )
            return recorded, [r.id for r in new]

        placement, recorded = self._placer.place(d, count, record)
        if recorded is None:
            return f"not placed: {placement.reason}"
        d, ids = recorded
        d = self._replicas.start(d, ids, only_from=UPDATING)
        problem = self._replicas.wait_healthy(d, ids)

        def mark_ready(x: scheduler_pb2.Deployment) -> None:
            for replica in x.replica_status:
                replica.ready = replica.ready or replica.id in ids

        try:
            if problem:
                self._replicas.remove(r for r in d.replica_status if r.id in ids)
                self._store.update(d.id, lambda x: _without(x, ids), only_from=UPDATING)
                return problem
            self._store.update(d.id, mark_ready, only_from=UPDATING)
        except Aborted:  # leave nothing running that no record points to
            self._replicas.remove(r for r in d.replica_status if r.id in ids)
            raise
        return None

    def _give_up(self, deployment_id: str, problem: str) -> None:
        """Back to what still serves: its version and its number of replicas (the rollout holds
        the deployment's lock, so nobody changes the replicas meanwhile)."""
        serving = [r for r in self._store.get(deployment_id).replica_status if r.ready]
        version = Counter(r.model_version for r in serving).most_common(1)[0][0] if serving else 0

        def revert(x: scheduler_pb2.Deployment) -> None:
            if serving:
                x.model.version, x.replicas = version, len(serving)

        self._store.update(
            deployment_id, revert, ready_or_cached,
            f"update given up, still serving version {version} on {len(serving)} replica(s): {problem}",
            only_from=UPDATING,
        )  # fmt: skip
        log.warning("rollout of %s given up: %s", deployment_id, problem)
