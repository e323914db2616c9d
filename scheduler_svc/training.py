"""Training jobs as callers ask for them, free of transport (servicer.py adapts it): RunTrainingJob
(a fit of a model's recipe on a given input, or a round on a STRICT deployment's node, checked,
its privacy charged), GetTrainingJob, CancelTrainingJob, ReadTrainingJobOutput and
DeleteTrainingJob. jobs.py places and runs them."""

from __future__ import annotations

from collections.abc import Iterator

from mlaas.client import RegistryClient
from mlaas.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from mlaas.refs import format_ref, job_state_name
from mlaas.retraining.federated import federated_recipe_problem
from mlaas.retraining.private_fit import private_recipe_problem
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.access import Access
from scheduler_svc.inputs import JobInput
from scheduler_svc.jobs import LIVE, JobStore, TrainingJobs, check_node_round
from scheduler_svc.privacy import charge, refund
from scheduler_svc.store import DeploymentStore

S = scheduler_pb2


class Training:
    def __init__(
        self, jobs: TrainingJobs, job_store: JobStore, store: DeploymentStore, access: Access,
        registry: RegistryClient, backend: str,
    ):  # fmt: skip
        """`registry`: asked with each caller's token; `backend`: its name, for what it cannot do."""
        self._jobs = jobs
        self._job_store = job_store
        self._store = store
        self._access = access
        self._registry = registry
        self._backend = backend

    def run(self, request: S.RunTrainingJobRequest, tenant: str, token: str | None) -> S.TrainingJob:
        if request.output_uri:
            raise InvalidArgument("output_uri is chosen by the scheduler (the job's own directory); leave it empty")
        given = JobInput(request.input_uri, request.input_data)
        if request.HasField("node_round"):
            return self._node_round(request, given, tenant, token)
        if not request.model.name:
            raise InvalidArgument("model.name is required")
        if not given:
            raise InvalidArgument("a training job needs its data: input_data, or input_uri")
        model = self._trainable(request.model, tenant, token)
        return self._jobs.run(model, given, tenant)

    def get(self, job_id: str, tenant: str) -> S.TrainingJob:
        """The job, if the caller started it (or is a mesh role); NotFound as for a missing one."""
        return self._access.job(self._job_store.get(job_id), tenant)

    def cancel(self, job_id: str, tenant: str) -> S.TrainingJob:
        job = self.get(job_id, tenant)
        if job.state not in LIVE:
            state = job_state_name(job.state)
            raise FailedPrecondition(f"training job {job.id} is {state}")
        return self._jobs.cancel(job, f"cancelled by {tenant or 'its owner'}")

    def output(self, job_id: str, which: int, tenant: str) -> Iterator[bytes]:
        return self._jobs.output(self.get(job_id, tenant), which)

    def delete(self, job_id: str, tenant: str) -> S.TrainingJob:
        return self._jobs.remove(self.get(job_id, tenant))

    def _trainable(self, ref: types_pb2.ModelRef, tenant: str, token: str | None) -> types_pb2.ModelVersion:
        model = self._registry.with_token(token).get(ref)  # NOT_FOUND / PERMISSION_DENIED pass through
        if not self._access.acts_for_owners(tenant, model.owner):
            raise PermissionDenied(f"only the owner of {model.description.name} may train it")
        if not model.description.recipe.steps:
            raise FailedPrecondition(f"{model.description.name}:{model.version} has no training recipe")
        return model

    def _node_round(
        self, request: S.RunTrainingJobRequest, given: JobInput, tenant: str, token: str | None
    ) -> S.TrainingJob:
        """A round on a STRICT deployment's node, of the version it serves (its owner's or the
        Monitor's call), where the backend lets a job reach the node's data."""
        plan = request.node_round
        if bool(given) != bool(plan.judge_candidate):
            raise InvalidArgument(
                "a node round reads the data kept on the node; its input (input_data or input_uri) is the "
                "candidate model of a federated round's judging step (judge_candidate), and nothing else"
            )
        check_node_round(plan)
        deployment = self._store.get(plan.deployment_id)  # NOT_FOUND
        if not self._access.acts_for_owners(tenant, deployment.tenant):
            raise NotFound(f"deployment {plan.deployment_id!r} not found")
        if deployment.mode != S.PLACEMENT_MODE_STRICT:
            raise FailedPrecondition(
                f"deployment {deployment.id} is OPEN: its labels are in the Monitor, which retrains it (input_data)"
            )
        serving = (deployment.model.name, deployment.model.version)
        if request.model.name and (request.model.name, request.model.version or serving[1]) != serving:
            raise InvalidArgument(f"deployment {deployment.id} serves {format_ref(deployment.model)}, not that model")
        if self._jobs.node_store(deployment.id) is None:
            raise FailedPrecondition(
                f"the {self._backend} backend keeps a STRICT deployment's data inside its replicas, out "
                "of a training job's reach; on-node retraining needs the local backend for now"
            )
        model = self._trainable(deployment.model, tenant, token)
        self._check_recipe(plan, deployment, model)
        self._store.update(deployment.id, charge(plan))  # FAILED_PRECONDITION past the privacy terms
        try:
            return self._jobs.run(model, given, tenant, node_round=plan, node=deployment.node)
        except Exception:  # refused (a round on the node already, its input): it spent nothing
            self._store.update(deployment.id, refund(plan))
            raise

    def _check_recipe(self, plan: S.NodeRound, deployment: S.Deployment, model: types_pb2.ModelVersion) -> None:
        """A private or federated round needs a recipe it can fit so, and the owner's own model
        (its reference data goes onto the node)."""
        ref = format_ref(deployment.model)
        if plan.epsilon and (why := private_recipe_problem(model.description.recipe)):
            raise FailedPrecondition(f"{ref} cannot be fitted with differential privacy: {why}")
        federated = plan.parameters_only or plan.judge_candidate
        if federated and (why := federated_recipe_problem(model.description.recipe)):
            raise FailedPrecondition(f"{ref} cannot be retrained federated: {why}")
        if (plan.epsilon or plan.parameters_only) and not self._access.same_owner(deployment.tenant, model.owner):
            raise FailedPrecondition(
                f"a private or federated round reads {ref}'s reference data onto the node, "
                "and that data is its owner's: only a deployment of the owner's own model has one"
            )
