"""mlaas.v1.RegistryService: the rpc handlers, thin over the catalogue and the artifact store."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc

from mlaas.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from mlaas.services.auth import MINTED_ROLES, MONITOR, TRAINER, Authenticator
from mlaas.services.live_scopes import LiveScopes
from mlaas.services.servicing import maps_errors
from mlaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2
from registry_svc.artifacts import CHUNK_BYTES, ArtifactStore
from registry_svc.catalog import Caller, Catalog, NewVersion
from registry_svc.guards import DeletionGuard
from registry_svc.settings import RegistrySettings
from registry_svc.staging import StagedFile
from registry_svc.validation import (
    check_alias,
    check_name,
    fill_default_resources,
    inspect_onnx,
    validate_description,
    validate_reference_data,
)

log = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 1 << 20


@maps_errors
class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(
        self,
        settings: RegistrySettings,
        catalog: Catalog,
        store: ArtifactStore,
        authenticator: Authenticator,
        guard: DeletionGuard,
        scopes: LiveScopes | None = None,
    ):
        self._settings = settings
        self._catalog = catalog
        self._store = store
        self._auth = authenticator
        self._guard = guard
        self._scopes = scopes  # a minted credential's deployment or job must still live
        settings.staging_dir.mkdir(parents=True, exist_ok=True)

    def _caller(self, context: grpc.ServicerContext) -> Caller:
        identity = self._auth.identity(context.invocation_metadata())
        if self._scopes is not None:
            self._scopes.check(identity)
        return Caller(
            identity.tenant,
            unrestricted=not self._auth.enabled,
            maintainer=self._auth.is_role(identity.tenant, MONITOR),
            only=identity.model if identity.role in MINTED_ROLES else "",
            also=identity.challenger if identity.role in MINTED_ROLES else 0,
            reads_reference=identity.role == TRAINER,
        )

    def RegisterModel(self, request_iterator, context):
        caller = self._caller(context)
        staging = self._settings.staging_dir
        artifact = StagedFile(staging, "artifact", self._settings.max_artifact_bytes)
        reference = StagedFile(staging, "reference data", self._settings.max_reference_bytes)
        try:
            description = self._receive(request_iterator, artifact, reference)
            signature = inspect_onnx(artifact.path)
            rows = validate_reference_data(reference.path, signature) if reference.size else 0
            fill_default_resources(description, artifact.size)
            new = NewVersion(
                description=description,
                signature=signature,
                artifact=types_pb2.ArtifactInfo(sha256=artifact.sha256, size_bytes=artifact.size),
                reference=types_pb2.ArtifactInfo(sha256=reference.sha256, size_bytes=reference.size)
                if reference.size
                else None,
                reference_rows=rows,
            )
            staged = [(artifact.sha256, artifact.path)]
            if reference.size:
                staged.append((reference.sha256, reference.path))

            def ensure_stored() -> None:
                for digest, path in staged:
                    if not self._store.exists(digest):
                        self._store.put(digest, path)

            # Copy outside the database lock (artifacts can be gigabytes); re-checked under it.
            ensure_stored()
            try:
                model, created = self._catalog.add_version(new, caller, ensure_stored)
            finally:
                # A refused or idempotent registration must not leave an unreferenced blob behind.
                self._catalog.release_unreferenced([d for d, _ in staged], self._store.delete)
            log.info(
                "%s %s:%d (%s)",
                "registered" if created else "already had",
                model.description.name,
                model.version,
                artifact.sha256[:12],
            )
            return registry_pb2.RegisterModelResponse(model=model, created=created)
        finally:
            artifact.discard()
            reference.discard()

    def _receive(self, request_iterator, artifact: StagedFile, reference: StagedFile) -> types_pb2.ModelDescription:
        description = None
        for message in request_iterator:
            part = message.WhichOneof("part")
            if part == "description":
                if description is not None:
                    raise InvalidArgument("the description was sent twice; send it once, first")
                description = validate_description(message.description)
                continue
            if description is None:
                raise InvalidArgument("the first message must carry the model description")
            if part is None:
                raise InvalidArgument(
                    "empty RegisterModelRequest: set description, artifact_chunk or reference_data_chunk"
                )
            chunk = getattr(message, part)
            if len(chunk) > MAX_CHUNK_BYTES:
                raise InvalidArgument(f"{part} of {len(chunk)} bytes exceeds the 1 MiB chunk limit")
            (artifact if part == "artifact_chunk" else reference).write(chunk)
        artifact.close()
        reference.close()
        if description is None:
            raise InvalidArgument("no model description received")
        if artifact.size == 0:
            raise InvalidArgument("no artifact bytes received: stream the ONNX file as artifact_chunk messages")
        return description

    def FindModels(self, request, context):
        return self._catalog.find(request, self._caller(context))

    def GetModel(self, request, context):
        check_name(request.ref.name)
        return registry_pb2.GetModelResponse(model=self._catalog.get(request.ref, self._caller(context)))

    def ListModels(self, request, context):
        return self._catalog.list(request, self._caller(context))

    def SetAlias(self, request, context):
        check_name(request.name)
        check_alias(request.alias)
        if request.version < 1:
            raise InvalidArgument("version must be 1 or more")
        model = self._catalog.set_alias(request.name, request.alias, request.version, self._caller(context))
        return registry_pb2.SetAliasResponse(model=model)

    def DeleteModelVersion(self, request, context):
        check_name(request.name)
        if request.version < 1:
            raise InvalidArgument("version must be 1 or more")
        caller = self._caller(context)
        # Existence and ownership first, so that a stranger learns nothing from the guard.
        self._catalog.check_deletable(request.name, request.version, caller)
        refusal = self._guard.refusal(request.name, request.version)
        if refusal:
            raise FailedPrecondition(f"model {request.name}:{request.version} cannot be deleted: {refusal}")
        self._catalog.delete(request.name, request.version, caller, self._store.delete)
        log.info("deleted %s:%d", request.name, request.version)
        return registry_pb2.DeleteModelVersionResponse()

    def DownloadArtifact(self, request, context) -> Iterator[registry_pb2.DownloadArtifactResponse]:
        check_name(request.ref.name)
        caller = self._caller(context)
        model = self._catalog.get(request.ref, caller)
        if request.kind == registry_pb2.ARTIFACT_KIND_REFERENCE_DATA:
            # Reference data is the owner's data (a retrained version's is recent production
            # inputs): other tenants see its row count, never its rows, even of a public model.
            if caller.tenant != model.owner and not (
                caller.unrestricted or caller.maintainer or caller.reads_reference
            ):
                name = f"{model.description.name}:{model.version}"
                raise PermissionDenied(f"the reference data of {name} is its owner's")
            if not model.reference_data.sha256:
                raise FailedPrecondition(
                    f"model {model.description.name}:{model.version} was registered without reference data"
                )
            digest = model.reference_data.sha256
        else:
            digest = model.artifact.sha256
        yield registry_pb2.DownloadArtifactResponse(model=model)
        for chunk in self._store.read(digest, CHUNK_BYTES):
            yield registry_pb2.DownloadArtifactResponse(chunk=chunk)
