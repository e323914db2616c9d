"""mlaas.v1.SchedulerService: each rpc adapts a transport-free core to gRPC (the caller's tenant
and token from the metadata in, the response message out). Deploy answers at once with a QUEUED
deployment (or a lease on a running one of the same version); placement workers do the rest
(deploys.py). Scale and UpdateDeployment answer at once too, with the deployment UPDATING; a
worker rolls it (updates.py, rollout.py). ActivateDeployment waits for a replica of a deployment
that scaled to zero (activation.py). Training jobs: training.py; what callers read: views.py."""

from __future__ import annotations

import grpc

from mlaas.services.auth import Authenticator, bearer_token
from mlaas.services.servicing import maps_errors
from mlaas.v1 import scheduler_pb2, scheduler_pb2_grpc
from scheduler_svc.activation import Activation
from scheduler_svc.deploys import Deploys
from scheduler_svc.states import TERMINAL
from scheduler_svc.store import DeploymentStore
from scheduler_svc.training import Training
from scheduler_svc.updates import Updates
from scheduler_svc.views import Views

S = scheduler_pb2


@maps_errors
class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(
        self, authenticator: Authenticator, store: DeploymentStore, deploys: Deploys, updates: Updates,
        training: Training, views: Views, activation: Activation,
    ):  # fmt: skip
        self._activation = activation
        self._auth = authenticator
        self._store = store
        self._deploys = deploys
        self._updates = updates
        self._training = training
        self._views = views

    def _caller(self, context: grpc.ServicerContext) -> tuple[str, str | None]:
        """(the caller's tenant, its token, passed on to the registry)."""
        metadata = context.invocation_metadata()
        return self._auth.tenant(metadata), bearer_token(metadata) or None

    def _tenant(self, context: grpc.ServicerContext) -> str:
        return self._caller(context)[0]

    def Deploy(self, request, context):
        response = self._deploys.deploy(request, *self._caller(context))
        self._views.addressed(response.deployment)
        return response

    def GetDeployment(self, request, context):
        return S.GetDeploymentResponse(deployment=self._views.deployment(request.deployment_id, self._tenant(context)))

    def ListDeployments(self, request, context):
        return self._views.deployments(request, self._tenant(context))

    def WatchDeployment(self, request, context):
        tenant, seen = self._tenant(context), "0"
        while context.is_active():
            self._views.deployment(request.deployment_id, tenant)  # a lease dropped meanwhile ends it
            for entry_id, event in self._store.events(request.deployment_id, seen, block_ms=1000):
                seen = entry_id
                deployment = self._views.addressed(self._store.get(request.deployment_id))
                yield S.WatchDeploymentResponse(event=event, deployment=deployment)
                if event.state in TERMINAL:
                    return

    def ListNodes(self, request, context):
        self._tenant(context)  # any caller the mesh knows
        return S.ListNodesResponse(nodes=self._views.nodes())

    def Decommission(self, request, context):
        deployment = self._updates.decommission(request, self._tenant(context))
        return S.DecommissionResponse(deployment=self._views.addressed(deployment))

    def Scale(self, request, context):
        return S.ScaleResponse(deployment=self._views.addressed(self._updates.scale(request, self._tenant(context))))

    def UpdateDeployment(self, request, context):
        deployment = self._updates.update(request, *self._caller(context))
        return S.UpdateDeploymentResponse(deployment=self._views.addressed(deployment))

    def ActivateDeployment(self, request, context):
        tenant, timeout = self._tenant(context), context.time_remaining()
        deployment = self._activation.activate_for_rpc(request.deployment_id, tenant, timeout)
        return S.ActivateDeploymentResponse(deployment=self._views.addressed(deployment))

    def RunTrainingJob(self, request, context):
        return S.RunTrainingJobResponse(job=self._training.run(request, *self._caller(context)))

    def GetTrainingJob(self, request, context):
        return S.GetTrainingJobResponse(job=self._training.get(request.job_id, self._tenant(context)))

    def CancelTrainingJob(self, request, context):
        return S.CancelTrainingJobResponse(job=self._training.cancel(request.job_id, self._tenant(context)))

    def ReadTrainingJobOutput(self, request, context):
        for chunk in self._training.output(request.job_id, request.output, self._tenant(context)):
            yield S.ReadTrainingJobOutputResponse(chunk=chunk)

    def DeleteTrainingJob(self, request, context):
        return S.DeleteTrainingJobResponse(job=self._training.delete(request.job_id, self._tenant(context)))
