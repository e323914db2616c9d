"""mlaas.v1.RegistryService: each rpc adapts the transport-free core (models.py) to gRPC, with
the caller's rights read from the metadata."""

from __future__ import annotations

import grpc

from mlaas.services.auth import MINTED_ROLES, MONITOR, TRAINER, Authenticator
from mlaas.services.live_scopes import LiveScopes
from mlaas.services.servicing import maps_errors
from mlaas.v1 import registry_pb2, registry_pb2_grpc
from registry_svc.catalog import Caller
from registry_svc.models import ModelRegistry

R = registry_pb2


@maps_errors
class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, models: ModelRegistry, authenticator: Authenticator, scopes: LiveScopes | None = None):
        self._models = models
        self._auth = authenticator
        self._scopes = scopes  # a minted credential's deployment or job must still live

    def _caller(self, context: grpc.ServicerContext) -> Caller:
        identity = self._auth.identity(context.invocation_metadata())
        if self._scopes is not None:
            self._scopes.check(identity)
        minted = identity.role in MINTED_ROLES
        return Caller(
            identity.tenant, unrestricted=not self._auth.enabled,
            maintainer=self._auth.is_role(identity.tenant, MONITOR),
            only=identity.model if minted else "", also=identity.challenger if minted else 0,
            reads_reference=identity.role == TRAINER,
        )  # fmt: skip

    def RegisterModel(self, request_iterator, context):
        return self._models.register(request_iterator, self._caller(context))

    def FindModels(self, request, context):
        return self._models.find(request, self._caller(context))

    def GetModel(self, request, context):
        return R.GetModelResponse(model=self._models.get(request.ref, self._caller(context)))

    def ListModels(self, request, context):
        return self._models.list(request, self._caller(context))

    def SetAlias(self, request, context):
        return R.SetAliasResponse(model=self._models.set_alias(request, self._caller(context)))

    def DeleteModelVersion(self, request, context):
        self._models.delete(request.name, request.version, self._caller(context))
        return R.DeleteModelVersionResponse()

    def DownloadArtifact(self, request, context):
        yield from self._models.download(request, self._caller(context))
