"""Changes to the models inside running replicas, through the runtime's repository rpcs (the
scheduler's alone on a deployment's runtime), each with the credential minted for what it loads:

- a hot version swap: each runtime fetches, loads and warms the new version beside the old one,
  then switches: requests that arrive from then on are answered by the new version, those already
  queued on the old one finish on it. No process starts, no endpoint changes, nothing is refused
  meanwhile. A replica that fails to swap keeps its version, and the rollout replaces it with a
  new process instead.
- a trial: a challenger loaded beside the served version, in shadow or as a canary
  (inference_svc/repository.py), and ended again (promoted by a swap to it, or dropped).
- a credential renewal: a fresh credential for what the replica serves (its trial included),
  before the one it holds expires.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import grpc

from mlaas import tls
from mlaas.client import bearer_metadata
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.refs import format_ref
from mlaas.services.repository_parameters import CANARY_PERCENT, CREDENTIAL, RENEW, TRIAL
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.replicas import Replicas
from scheduler_svc.states import WATCHED
from scheduler_svc.store import DeploymentStore

log = logging.getLogger(__name__)
S = scheduler_pb2
TRIAL_MODES = {S.TRIAL_MODE_SHADOW: "shadow", S.TRIAL_MODE_CANARY: "canary"}


def renew_credentials(store: DeploymentStore, models: ReplicaModels) -> None:
    """A fresh credential to every serving replica of the READY and CACHED deployments."""
    for deployment in store.list(WATCHED):
        models.renew(deployment)


class ReplicaModels:
    def __init__(self, replicas: Replicas, token: str | None, timeout_seconds: float):
        self._replicas = replicas
        self._metadata = bearer_metadata(token)  # the scheduler's own: runtimes' repositories are its
        self._timeout = timeout_seconds

    def swap(
        self, deployment: scheduler_pb2.Deployment, replicas: Collection[scheduler_pb2.Replica], version: int
    ) -> set[str]:
        """The ids of `replicas` that serve `version` now, in their own processes."""
        swapped = set()
        for replica in replicas:
            spec = self._replicas.spec(deployment, replica, version=version)
            request = oip.RepositoryModelLoadRequest(model_name=spec.model_ref)
            if spec.token:
                request.parameters[CREDENTIAL].string_param = spec.token
            if self._call(replica, "RepositoryModelLoad", request):
                swapped.add(replica.id)
        return swapped

    def start_trial(
        self, deployment: scheduler_pb2.Deployment, replicas: Collection[scheduler_pb2.Replica]
    ) -> set[str]:
        """The ids of `replicas` that run the deployment's trial now."""
        trial = deployment.trial
        started = set()
        for replica in replicas:
            # What the replica serves and, during the trial, its challenger: one credential for both.
            spec = self._replicas.spec(deployment, replica, challenger=trial.version)
            challenger = types_pb2.ModelRef(name=deployment.model.name, version=trial.version)
            request = oip.RepositoryModelLoadRequest(model_name=format_ref(challenger))
            request.parameters[TRIAL].string_param = TRIAL_MODES[trial.mode]
            if trial.mode == S.TRIAL_MODE_CANARY:
                request.parameters[CANARY_PERCENT].string_param = repr(trial.canary_percent)
            if spec.token:
                request.parameters[CREDENTIAL].string_param = spec.token
            if self._call(replica, "RepositoryModelLoad", request):
                started.add(replica.id)
        return started

    def end_trial(self, deployment: scheduler_pb2.Deployment, replicas: Collection[scheduler_pb2.Replica]) -> set[str]:
        """The ids of `replicas` whose trial ended (its challenger unloaded), each with a fresh
        credential of the served version alone."""
        ended = set()
        for replica in replicas:
            request = oip.RepositoryModelUnloadRequest(model_name=deployment.model.name)
            request.parameters[TRIAL].bool_param = True
            if token := self._replicas.spec(deployment, replica).token:
                request.parameters[CREDENTIAL].string_param = token
            if self._call(replica, "RepositoryModelUnload", request):
                ended.add(replica.id)
        return ended

    def renew(self, deployment: scheduler_pb2.Deployment) -> None:
        """A fresh credential to each serving replica of the deployment (one that misses it gets
        the next: renewals come every third of a credential's life)."""
        challenger = deployment.trial.version if deployment.HasField("trial") else 0
        for replica in (r for r in deployment.replica_status if r.ready):
            spec = self._replicas.spec(deployment, replica, challenger=challenger)
            if not spec.token:
                return  # a mesh without auth: nothing to renew
            request = oip.RepositoryModelLoadRequest(model_name=spec.model_ref)
            request.parameters[CREDENTIAL].string_param = spec.token
            request.parameters[RENEW].bool_param = True
            self._call(replica, "RepositoryModelLoad", request)

    def _call(self, replica: scheduler_pb2.Replica, method: str, request) -> bool:
        try:
            with tls.channel(replica.endpoint) as channel:
                stub = oip_grpc.GRPCInferenceServiceStub(channel)
                getattr(stub, method)(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as err:
            log.warning("%s on replica %s failed: %s", method, replica.id, err.details())
            return False
        return True
