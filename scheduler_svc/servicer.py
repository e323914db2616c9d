"""mlaas.v1.SchedulerService: Deploy answers at once with a QUEUED deployment (or a lease on a
running one of the same version); placement workers do the rest. Scale and UpdateDeployment
answer at once too, with the deployment UPDATING; a worker rolls it (rollout.py)."""

from __future__ import annotations

import grpc

from mlaas.client import RegistryClient
from mlaas.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from mlaas.refs import format_ref, state_name
from mlaas.services.auth import MONITOR, REGISTRY, Authenticator, bearer_token
from mlaas.services.federated import federated_recipe_problem
from mlaas.services.paging import decode_page_token, encode_page_token, page_size, query_key
from mlaas.services.private_fit import private_recipe_problem
from mlaas.services.servicing import maps_errors
from mlaas.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2
from scheduler_svc.deploys import MAX_REPLICAS, Deploys
from scheduler_svc.jobs import LIVE, JobStore, TrainingJobs, check_node_round
from scheduler_svc.lifecycle import Lifecycle
from scheduler_svc.placer import nodes_with_allocations
from scheduler_svc.privacy import charge, refund, set_terms
from scheduler_svc.queue import DeploymentQueue
from scheduler_svc.settings import SchedulerSettings
from scheduler_svc.states import TERMINAL, WATCHED
from scheduler_svc.store import DeploymentStore
from scheduler_svc.trials import end_trial, start_trial

S = scheduler_pb2


@maps_errors
class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(
        self,
        settings: SchedulerSettings,
        store: DeploymentStore,
        queue: DeploymentQueue,
        lifecycle: Lifecycle,
        authenticator: Authenticator,
        jobs: TrainingJobs,
        job_store: JobStore,
        registry: RegistryClient,
        deploys: Deploys,
    ):
        self._deploys = deploys
        self._registry = registry  # asked with each caller's own token
        self._jobs = jobs
        self._job_store = job_store
        self._settings = settings
        self._store = store
        self._queue = queue
        self._lifecycle = lifecycle
        self._auth = authenticator

    def _tenant_and_token(self, context: grpc.ServicerContext) -> tuple[str, str | None]:
        metadata = context.invocation_metadata()
        return self._auth.tenant(metadata), bearer_token(metadata) or None

    def _sees_all(self, tenant: str) -> bool:
        """Open mode's single user, and the roles that look after every tenant's deployments."""
        return not self._auth.enabled or self._auth.is_role(tenant, MONITOR, REGISTRY)

    def _visible(self, deployment: scheduler_pb2.Deployment, tenant: str) -> scheduler_pb2.Deployment:
        """Its owner and the tenants holding a lease on it see a deployment; others do not."""
        if (
            not self._sees_all(tenant)
            and deployment.tenant != tenant
            and tenant not in self._lifecycle.leases(deployment.id).values()
        ):
            raise NotFound(f"deployment {deployment.id!r} not found")
        return deployment

    def Deploy(self, request, context):
        return self._deploys.deploy(request, *self._tenant_and_token(context))

    def GetDeployment(self, request, context):
        tenant, _ = self._tenant_and_token(context)
        return S.GetDeploymentResponse(deployment=self._visible(self._store.get(request.deployment_id), tenant))

    def ListDeployments(self, request, context):
        tenant, _ = self._tenant_and_token(context)
        found = [
            d
            for d in self._store.list(request.states)
            if (self._sees_all(tenant) or d.tenant == tenant)
            and (not request.model_name or d.model.name == request.model_name)
            and (
                not request.model_version
                or request.model_version in {d.model.version, *(r.model_version for r in d.replica_status)}
            )
        ]
        return _page(found, request)

    def WatchDeployment(self, request, context):
        tenant, _ = self._tenant_and_token(context)
        seen = "0"
        while context.is_active():
            self._visible(self._store.get(request.deployment_id), tenant)  # a lease dropped meanwhile ends it
            for entry_id, event in self._store.events(request.deployment_id, seen, block_ms=1000):
                seen = entry_id
                yield S.WatchDeploymentResponse(event=event, deployment=self._store.get(request.deployment_id))
                if event.state in TERMINAL:
                    return

    def ListNodes(self, request, context):
        self._tenant_and_token(context)
        nodes = []
        for node in nodes_with_allocations(self._settings, self._store, jobs=self._job_store.allocations()):
            cpu, memory, gpus = node.allocatable
            used_cpu, used_memory, used_gpus = node.allocated
            nodes.append(
                S.Node(
                    name=node.name,
                    allocatable=types_pb2.Resources(cpu_millicores=cpu, memory_bytes=memory, gpus=gpus),
                    allocated=types_pb2.Resources(cpu_millicores=used_cpu, memory_bytes=used_memory, gpus=used_gpus),
                    free=types_pb2.Resources(
                        cpu_millicores=cpu - used_cpu, memory_bytes=memory - used_memory, gpus=gpus - used_gpus
                    ),
                    labels=dict(node.labels),
                    backend=self._settings.backend,
                )
            )
        return S.ListNodesResponse(nodes=nodes)

    def Decommission(self, request, context):
        """Drops the caller's lease; the last one caches the deployment (see lifecycle.py)."""
        tenant, _ = self._tenant_and_token(context)
        deployment = self._visible(self._store.get(request.deployment_id), tenant)
        if deployment.state in TERMINAL:
            state = state_name(deployment.state)
            raise FailedPrecondition(f"deployment {deployment.id} is already {state}")
        deployment = self._lifecycle.drop_lease(deployment.id, tenant, request.lease_id)
        return S.DecommissionResponse(deployment=deployment)

    def Scale(self, request, context):
        tenant, _ = self._tenant_and_token(context)
        if not 1 <= request.replicas <= MAX_REPLICAS:
            raise InvalidArgument(f"replicas must be between 1 and {MAX_REPLICAS}")
        deployment = self._owned(self._store.get(request.deployment_id), tenant, "scale")
        if deployment.replicas == request.replicas and deployment.state == S.DEPLOYMENT_STATE_READY:
            return S.ScaleResponse(deployment=deployment)

        def scale(d: scheduler_pb2.Deployment) -> None:
            d.replicas = request.replicas

        detail = f"scaling from {deployment.replicas} to {request.replicas} replica(s)"
        return S.ScaleResponse(deployment=self._begin_update(deployment, scale, detail))

    def UpdateDeployment(self, request, context):
        tenant, token = self._tenant_and_token(context)
        deployment = self._owned(self._store.get(request.deployment_id), tenant, "update", for_owner=MONITOR)
        if request.HasField("privacy"):
            if request.HasField("model") or request.trial_mode or request.canary_percent or request.end_trial:
                raise InvalidArgument("privacy goes alone: no model, trial_mode, canary_percent or end_trial with it")
            change, detail = set_terms(deployment, request.privacy)
            return S.UpdateDeploymentResponse(deployment=self._store.update(deployment.id, change, detail=detail))
        if request.end_trial:
            if request.HasField("model") or request.trial_mode or request.canary_percent:
                raise InvalidArgument("end_trial goes alone: no model, trial_mode or canary_percent with it")
            change, detail = end_trial(deployment, request.end_trial)
            return S.UpdateDeploymentResponse(deployment=self._begin_update(deployment, change, detail))
        if request.model.name not in ("", deployment.model.name):
            raise InvalidArgument(
                f"deployment {deployment.id} serves {deployment.model.name}; deploy {request.model.name} on its own"
            )
        wanted = types_pb2.ModelRef()
        wanted.CopyFrom(request.model)
        wanted.name = deployment.model.name
        version = self._registry.with_token(token).get(wanted).version  # NOT_FOUND / PERMISSION_DENIED pass through
        # Under the share lock: no other tenant's Deploy takes a lease on it meanwhile (Deploy
        # shares no deployment with a trial: its challenger is its owner's alone).
        with self._lifecycle.share_lock(deployment.model.name, deployment.model.version):
            others = set(self._lifecycle.leases(deployment.id).values()) - {deployment.tenant}
            if others:
                raise FailedPrecondition(
                    f"deployment {deployment.id} is shared with other tenants, who deployed version "
                    f"{deployment.model.version}; deploy the new version on its own"
                )
            if request.trial_mode or request.canary_percent:
                change, detail = start_trial(deployment, version, request.trial_mode, request.canary_percent)
                return S.UpdateDeploymentResponse(deployment=self._begin_update(deployment, change, detail))
        if version == deployment.model.version and deployment.state == S.DEPLOYMENT_STATE_READY:
            return S.UpdateDeploymentResponse(deployment=deployment)

        def roll(d: scheduler_pb2.Deployment) -> None:
            d.model.version = version
            d.ClearField("trial")  # a trial of another version ends with the roll

        detail = f"rolling from version {deployment.model.version} to {version}"
        return S.UpdateDeploymentResponse(deployment=self._begin_update(deployment, roll, detail))

    def _owned(
        self, deployment: scheduler_pb2.Deployment, tenant: str, action: str, for_owner: str = ""
    ) -> scheduler_pb2.Deployment:
        """The deployment, if `tenant` may change it: its owner (or the role `for_owner`, which
        acts for owners). Lease holders use a deployment; they do not steer it."""
        self._visible(deployment, tenant)
        if not self._auth.enabled or tenant == deployment.tenant or self._auth.is_role(tenant, for_owner):
            return deployment
        raise PermissionDenied(f"only the owner of deployment {deployment.id} may {action} it")

    def _begin_update(self, deployment: scheduler_pb2.Deployment, change, detail: str) -> scheduler_pb2.Deployment:
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

    def RunTrainingJob(self, request, context):
        tenant, token = self._tenant_and_token(context)
        if request.output_uri:
            raise InvalidArgument("output_uri is chosen by the scheduler (the job's own directory); leave it empty")
        if request.HasField("node_round"):
            return S.RunTrainingJobResponse(job=self._node_round(request, tenant, token))
        if not request.model.name:
            raise InvalidArgument("model.name is required")
        model = self._trainable(request.model, tenant, token)
        job = self._jobs.run(model, request.input_uri, tenant)
        return S.RunTrainingJobResponse(job=job)

    def _trainable(self, ref: types_pb2.ModelRef, tenant: str, token: str | None) -> types_pb2.ModelVersion:
        model = self._registry.with_token(token).get(ref)  # NOT_FOUND / PERMISSION_DENIED pass through
        if self._auth.enabled and model.owner != tenant and not self._auth.is_role(tenant, MONITOR):
            raise PermissionDenied(f"only the owner of {model.description.name} may train it")
        if not model.description.recipe.steps:
            raise FailedPrecondition(f"{model.description.name}:{model.version} has no training recipe")
        return model

    def _node_round(self, request, tenant: str, token: str | None) -> scheduler_pb2.TrainingJob:
        """A round on a STRICT deployment's node, of the version it serves (its owner's or the
        Monitor's call), where the backend lets a job reach the node's data."""
        plan = request.node_round
        if bool(request.input_uri) != bool(plan.judge_candidate):
            raise InvalidArgument(
                "a node round reads the data kept on the node; input_uri is the candidate model of a federated "
                "round's judging step (judge_candidate), and nothing else"
            )
        check_node_round(plan)
        deployment = self._store.get(plan.deployment_id)  # NOT_FOUND
        if self._auth.enabled and deployment.tenant != tenant and not self._auth.is_role(tenant, MONITOR):
            raise NotFound(f"deployment {plan.deployment_id!r} not found")
        if deployment.mode != S.PLACEMENT_MODE_STRICT:
            raise FailedPrecondition(
                f"deployment {deployment.id} is OPEN: its labels are in the Monitor, which retrains it (input_uri)"
            )
        serving = (deployment.model.name, deployment.model.version)
        if request.model.name and (request.model.name, request.model.version or serving[1]) != serving:
            raise InvalidArgument(f"deployment {deployment.id} serves {format_ref(deployment.model)}, not that model")
        if self._jobs.node_store(deployment.id) is None:
            raise FailedPrecondition(
                f"the {self._settings.backend} backend keeps a STRICT deployment's data inside its replicas, out "
                "of a training job's reach; on-node retraining needs the local backend for now"
            )
        model = self._trainable(deployment.model, tenant, token)
        if plan.epsilon and (why := private_recipe_problem(model.description.recipe)):
            raise FailedPrecondition(
                f"{format_ref(deployment.model)} cannot be fitted with differential privacy: {why}"
            )
        if (plan.parameters_only or plan.judge_candidate) and (
            why := federated_recipe_problem(model.description.recipe)
        ):
            raise FailedPrecondition(f"{format_ref(deployment.model)} cannot be retrained federated: {why}")
        if (plan.epsilon or plan.parameters_only) and self._auth.enabled and deployment.tenant != model.owner:
            raise FailedPrecondition(
                f"a private or federated round reads {format_ref(deployment.model)}'s reference data onto the node, "
                "and that data is its owner's: only a deployment of the owner's own model has one"
            )
        self._store.update(deployment.id, charge(plan))  # FAILED_PRECONDITION past the privacy terms
        try:
            return self._jobs.run(model, request.input_uri, tenant, node_round=plan, node=deployment.node)
        except Exception:  # refused (a round on the node already, its input): it spent nothing
            self._store.update(deployment.id, refund(plan))
            raise

    def _job(self, context, job_id: str) -> scheduler_pb2.TrainingJob:
        """The job, if the caller started it (or is the Monitor); NotFound as for a missing one."""
        tenant, _ = self._tenant_and_token(context)
        job = self._job_store.get(job_id)
        if self._auth.enabled and job.tenant != tenant and not self._auth.is_role(tenant, MONITOR, REGISTRY):
            raise NotFound(f"training job {job_id!r} not found")
        return job

    def GetTrainingJob(self, request, context):
        return S.GetTrainingJobResponse(job=self._job(context, request.job_id))

    def CancelTrainingJob(self, request, context):
        job = self._job(context, request.job_id)
        if job.state not in LIVE:
            raise FailedPrecondition(
                f"training job {job.id} is {S.JobState.Name(job.state).removeprefix('JOB_STATE_')}"
            )
        tenant, _ = self._tenant_and_token(context)
        return S.CancelTrainingJobResponse(job=self._jobs.cancel(job, f"cancelled by {tenant or 'its owner'}"))

    def end_the_rest(self) -> None:
        """When `mlaas up` shuts the mesh down, after the READY and CACHED deployments' replicas
        stopped: a deployment still on its way (placed, starting, rolling) is destroyed with the
        reason, and every training job is cancelled (a local job runs in a session of its own,
        and nothing would stop it at its deadline once the scheduler is gone)."""
        for deployment in self._store.list():
            if deployment.state not in TERMINAL and deployment.state not in WATCHED:
                state = S.DeploymentState.Name(deployment.state)
                self._lifecycle.destroy(deployment, f"the mesh shut down while it was {state}; deploy it again")
        for job in self._job_store.live():
            self._jobs.cancel(job, "the mesh shut down")


def _page(found: list[S.Deployment], request: S.ListDeploymentsRequest) -> S.ListDeploymentsResponse:
    """One page, oldest first. The token holds the last deployment seen (its creation time and
    id), not an offset: deployments created or destroyed between two pages shift nothing."""
    limit, query = page_size(request.page_size), query_key(request)
    after = decode_page_token(request.page_token, query, lambda p: isinstance(p, list) and len(p) == 3)
    after = tuple(after) if after is not None else None
    ordered = sorted(found, key=_position)
    rest = [d for d in ordered if after is None or _position(d) > after]
    response = S.ListDeploymentsResponse(deployments=rest[:limit])
    if len(rest) > limit:
        response.next_page_token = encode_page_token(list(_position(rest[limit - 1])), query)
    return response


def _position(deployment: S.Deployment) -> tuple[int, int, str]:
    return deployment.created_at.seconds, deployment.created_at.nanos, deployment.id
