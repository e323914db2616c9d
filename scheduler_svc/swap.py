"""A hot version swap: running replicas move to another version of their model inside their
processes, through the runtime's RepositoryModelLoad with the credential minted for the new
version. Each runtime fetches, loads and warms the new version beside the old one, then switches:
requests that arrive from then on are answered by the new version, those already queued on the
old one finish on it. No process starts, no endpoint changes, nothing is refused meanwhile.

Only a change of version is swapped (UpdateDeployment changes nothing else); a replica that fails
to swap keeps its version, and the rollout replaces it with a new process instead.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import grpc

from mlaas import tls
from mlaas.client import bearer_metadata
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.services.auth import CREDENTIAL_PARAMETER
from mlaas.v1 import scheduler_pb2
from scheduler_svc.replicas import Replicas

log = logging.getLogger(__name__)


class VersionSwap:
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
                request.parameters[CREDENTIAL_PARAMETER].string_param = spec.token
            try:
                with tls.channel(replica.endpoint) as channel:
                    stub = oip_grpc.GRPCInferenceServiceStub(channel)
                    stub.RepositoryModelLoad(request, metadata=self._metadata, timeout=self._timeout)
            except grpc.RpcError as err:
                log.warning("replica %s did not swap to %s: %s", replica.id, spec.model_ref, err.details())
                continue
            swapped.add(replica.id)
        return swapped
