"""Changes to a deployment that exists, free of transport (servicer.py adapts them): Decommission
(a lease dropped), Scale (its owner's, or the autoscaler's), and UpdateDeployment (a roll to
another version, a trial started or ended, the privacy terms, the autoscaling policy). A change
answers at once with the deployment UPDATING and queued for a placement worker, which rolls it
(rollout.py); only a READY deployment changes, one change at a time."""

from __future__ import annotations

from collections.abc import Callable

from mlaas.client import RegistryClient
from mlaas.errors import Aborted, FailedPrecondition, InvalidArgument
from mlaas.refs import state_name
from mlaas.services.auth import MONITOR
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.access import Access
from scheduler_svc.autoscaling import check_policy
from scheduler_svc.deploys import MAX_REPLICAS
from scheduler_svc.lifecycle import Lifecycle
from scheduler_svc.privacy import set_terms
from scheduler_svc.queue import DeploymentQueue
from scheduler_svc.states import TERMINAL
from scheduler_svc.store import DeploymentStore
from scheduler_svc.trials import end_trial, start_trial

S = scheduler_pb2
Change = Callable[[scheduler_pb2.Deployment], None]


class Updates:
    def __init__(
        self, store: DeploymentStore, queue: DeploymentQueue, lifecycle: Lifecycle, access: Access,
        registry: RegistryClient, tenant_cap: int | None = None,
    ):  # fmt: skip
        """`registry`: asked with each caller's token; `tenant_cap`: the most replicas the
        autoscaler gives one tenant (None: no cap)."""
        self._tenant_cap = tenant_cap
        self._store = store
        self._queue = queue
        self._lifecycle = lifecycle
        self._access = access
        self._registry = registry

    def decommission(self, request: S.DecommissionRequest, tenant: str) -> S.Deployment:
        """Drops the caller's lease; the last one caches the deployment (lifecycle.py)."""
        deployment = self._access.visible(self._store.get(request.deployment_id), tenant)
        if deployment.state in TERMINAL:
            raise FailedPrecondition(f"deployment {deployment.id} is already {state_name(deployment.state)}")
        return self._lifecycle.drop_lease(deployment.id, tenant, request.lease_id)

    def scale(self, request: S.ScaleRequest, tenant: str) -> S.Deployment:
        if not 1 <= request.replicas <= MAX_REPLICAS:
            raise InvalidArgument(f"replicas must be between 1 and {MAX_REPLICAS}")
        deployment = self._access.owned(self._store.get(request.deployment_id), tenant, "scale")
        if deployment.HasField("autoscaling"):
            policy = deployment.autoscaling
            raise FailedPrecondition(
                f"deployment {deployment.id} is autoscaled between {policy.min_replicas} and {policy.max_replicas} "
                "replicas; change its policy (UpdateDeployment autoscaling) or turn it off (clear_autoscaling)"
            )
        if deployment.replicas == request.replicas and deployment.state == S.DEPLOYMENT_STATE_READY:
            return deployment
        return self.rescale(
            deployment.id, request.replicas, f"scaling from {deployment.replicas} to {request.replicas} replica(s)"
        )

    def rescale(self, deployment_id: str, replicas: int, detail: str, autoscaler: bool = False) -> S.Deployment:
        """Scale's change, also the autoscaler's (the scheduler's own: no caller to check), which
        stands only if the policy it decided under still allows it when it is made (its owner
        may have changed or lifted the policy since)."""

        def scale(d: scheduler_pb2.Deployment) -> None:
            policy = d.autoscaling
            if autoscaler and not (
                d.HasField("autoscaling") and policy.min_replicas <= replicas <= policy.max_replicas
            ):
                raise Aborted(f"deployment {d.id}'s autoscaling policy changed meanwhile")
            d.replicas = replicas

        return self._begin(self._store.get(deployment_id), scale, detail)

    def update(self, request: S.UpdateDeploymentRequest, tenant: str, token: str | None) -> S.Deployment:
        """The privacy terms, a trial's end, a trial's start or a roll, as the request asks;
        `token`: the caller's, for the registry."""
        deployment = self._access.owned(self._store.get(request.deployment_id), tenant, "update", for_owner=MONITOR)
        if request.HasField("autoscaling") or request.clear_autoscaling:
            return self._autoscale(deployment, request)
        if request.HasField("privacy"):
            if request.HasField("model") or request.trial_mode or request.canary_percent or request.end_trial:
                raise InvalidArgument("privacy goes alone: no model, trial_mode, canary_percent or end_trial with it")
            change, detail = set_terms(deployment, request.privacy)
            return self._store.update(deployment.id, change, detail=detail)
        if request.end_trial:
            if request.HasField("model") or request.trial_mode or request.canary_percent:
                raise InvalidArgument("end_trial goes alone: no model, trial_mode or canary_percent with it")
            versions = request.trial_champion_version, request.trial_challenger_version
            return self._begin(deployment, *end_trial(deployment, request.end_trial, *versions))
        version = self._version(deployment, request.model, token)
        # Under the share lock: no other tenant's Deploy takes a lease on it meanwhile (Deploy
        # shares no deployment with a trial: its challenger is its owner's alone).
        with self._lifecycle.share_lock(deployment.model.name, deployment.model.version):
            if set(self._lifecycle.leases(deployment.id).values()) - {deployment.tenant}:
                raise FailedPrecondition(
                    f"deployment {deployment.id} is shared with other tenants, who deployed version "
                    f"{deployment.model.version}; deploy the new version on its own"
                )
            if request.trial_mode or request.canary_percent:
                return self._begin(
                    deployment, *start_trial(deployment, version, request.trial_mode, request.canary_percent)
                )
        if version == deployment.model.version and deployment.state == S.DEPLOYMENT_STATE_READY:
            return deployment

        def roll(d: scheduler_pb2.Deployment) -> None:
            d.model.version = version
            d.ClearField("trial")  # a trial of another version ends with the roll

        return self._begin(deployment, roll, f"rolling from version {deployment.model.version} to {version}")

    def _autoscale(self, deployment: S.Deployment, request: S.UpdateDeploymentRequest) -> S.Deployment:
        """Sets the autoscaling policy (or turns it off); replicas outside its new bounds are
        brought within them in the same change, which then needs the deployment READY."""
        if (
            request.HasField("model")
            or request.trial_mode
            or request.canary_percent
            or request.end_trial
            or (request.HasField("privacy") or (request.HasField("autoscaling") and request.clear_autoscaling))
        ):
            raise InvalidArgument("autoscaling or clear_autoscaling goes alone: nothing else with it")
        if request.clear_autoscaling:
            if deployment.replicas == 0:  # scaled to zero: nothing would ever start a replica again

                def off_with_one(d: S.Deployment) -> None:
                    d.ClearField("autoscaling")
                    d.replicas = 1

                return self._begin(deployment, off_with_one, "autoscaling off: scaling from 0 to 1 replica")
            return self._store.update(deployment.id, lambda d: d.ClearField("autoscaling"), detail="autoscaling off")
        policy = request.autoscaling
        check_policy(policy, MAX_REPLICAS, self._tenant_cap)
        if set(self._lifecycle.leases(deployment.id).values()) - {deployment.tenant}:
            raise FailedPrecondition(
                f"deployment {deployment.id} is shared with other tenants: their traffic would scale what you "
                "pay for; deploy the model on its own to autoscale it"
            )
        detail = f"autoscaling between {policy.min_replicas} and {policy.max_replicas} replicas"
        within = min(max(deployment.replicas, policy.min_replicas), policy.max_replicas)

        def adopt(d: S.Deployment) -> None:
            if d.replicas != deployment.replicas:
                raise Aborted(f"deployment {d.id} was scaled meanwhile; send the policy again")
            d.autoscaling.CopyFrom(policy)
            d.replicas = within

        if within == deployment.replicas:
            return self._store.update(deployment.id, adopt, detail=detail)
        return self._begin(deployment, adopt, f"{detail}: scaling from {deployment.replicas} to {within} replica(s)")

    def _version(self, deployment: S.Deployment, ref: types_pb2.ModelRef, token: str | None) -> int:
        """The version of the deployment's model that `ref` names, as the caller may read it."""
        if ref.name not in ("", deployment.model.name):
            raise InvalidArgument(
                f"deployment {deployment.id} serves {deployment.model.name}; deploy {ref.name} on its own"
            )
        wanted = types_pb2.ModelRef()
        wanted.CopyFrom(ref)
        wanted.name = deployment.model.name
        return self._registry.with_token(token).get(wanted).version  # NOT_FOUND / PERMISSION_DENIED pass through

    def _begin(self, deployment: S.Deployment, change: Change, detail: str) -> S.Deployment:
        """UPDATING, queued for a worker; only a READY deployment can change (one change at a time)."""
        try:
            updating = self._store.update(
                deployment.id, change, S.DEPLOYMENT_STATE_UPDATING, detail, only_from={S.DEPLOYMENT_STATE_READY}
            )
        except Aborted:
            state = state_name(self._store.get(deployment.id).state)
            raise FailedPrecondition(f"deployment {deployment.id} is {state}; only a READY one can change") from None
        self._queue.enqueue(deployment.id)
        return updating
