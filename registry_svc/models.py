"""The registry's core, free of transport (servicer.py adapts it to gRPC): registering a version
from its uploaded parts, finding, reading and downloading versions, moving aliases and deleting,
each for a Caller whose rights catalog.py applies."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from mlaas.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from mlaas.v1 import registry_pb2, types_pb2
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
R = registry_pb2
MAX_CHUNK_BYTES = 1 << 20


class ModelRegistry:
    def __init__(self, settings: RegistrySettings, catalog: Catalog, store: ArtifactStore, guard: DeletionGuard):
        """`guard`: asked before a version that may be deployed is deleted."""
        self._settings = settings
        self._catalog = catalog
        self._store = store
        self._guard = guard
        settings.staging_dir.mkdir(parents=True, exist_ok=True)

    def register(self, parts: Iterable[R.RegisterModelRequest], caller: Caller) -> R.RegisterModelResponse:
        """A new version from its description and chunks, checked whole before anything is kept;
        the same bytes and description again are the version already there (created: false)."""
        staging = self._settings.staging_dir
        artifact = StagedFile(staging, "artifact", self._settings.max_artifact_bytes)
        reference = StagedFile(staging, "reference data", self._settings.max_reference_bytes)
        try:
            description = _receive(parts, artifact, reference)
            signature = inspect_onnx(artifact.path)
            rows = validate_reference_data(reference.path, signature) if reference.size else 0
            fill_default_resources(description, artifact.size)
            staged = [(artifact.sha256, artifact.path)]
            if reference.size:
                staged.append((reference.sha256, reference.path))
            new = NewVersion(
                description=description, signature=signature,
                artifact=types_pb2.ArtifactInfo(sha256=artifact.sha256, size_bytes=artifact.size),
                reference=types_pb2.ArtifactInfo(sha256=reference.sha256, size_bytes=reference.size)
                if reference.size else None,
                reference_rows=rows,
            )  # fmt: skip

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
            name, sha = model.description.name, artifact.sha256[:12]
            log.info("%s %s:%d (%s)", "registered" if created else "already had", name, model.version, sha)
            return R.RegisterModelResponse(model=model, created=created)
        finally:
            artifact.discard()
            reference.discard()

    def find(self, request: R.FindModelsRequest, caller: Caller) -> R.FindModelsResponse:
        return self._catalog.find(request, caller)

    def get(self, ref: types_pb2.ModelRef, caller: Caller) -> types_pb2.ModelVersion:
        check_name(ref.name)
        return self._catalog.get(ref, caller)

    def list(self, request: R.ListModelsRequest, caller: Caller) -> R.ListModelsResponse:
        return self._catalog.list(request, caller)

    def set_alias(self, request: R.SetAliasRequest, caller: Caller) -> types_pb2.ModelVersion:
        check_name(request.name)
        check_alias(request.alias)
        if request.version < 1:
            raise InvalidArgument("version must be 1 or more")
        return self._catalog.set_alias(request.name, request.alias, request.version, caller)

    def delete(self, name: str, version: int, caller: Caller) -> None:
        check_name(name)
        if version < 1:
            raise InvalidArgument("version must be 1 or more")
        # Existence and ownership first, so that a stranger learns nothing from the guard.
        self._catalog.check_deletable(name, version, caller)
        refusal = self._guard.refusal(name, version)
        if refusal:
            raise FailedPrecondition(f"model {name}:{version} cannot be deleted: {refusal}")
        self._catalog.delete(name, version, caller, self._store.delete)
        log.info("deleted %s:%d", name, version)

    def download(self, request: R.DownloadArtifactRequest, caller: Caller) -> Iterator[R.DownloadArtifactResponse]:
        """The version first, then its artifact's (or reference data's) bytes in chunks."""
        model = self.get(request.ref, caller)
        if request.kind == R.ARTIFACT_KIND_REFERENCE_DATA:
            # Reference data is the owner's data (a retrained version's is recent production
            # inputs): other tenants see its row count, never its rows, even of a public model.
            readers = caller.unrestricted or caller.maintainer or caller.reads_reference
            if caller.tenant != model.owner and not readers:
                raise PermissionDenied(f"the reference data of {model.description.name}:{model.version} is its owner's")
            if not model.reference_data.sha256:
                raise FailedPrecondition(
                    f"model {model.description.name}:{model.version} was registered without reference data"
                )
            digest = model.reference_data.sha256
        else:
            digest = model.artifact.sha256
        yield R.DownloadArtifactResponse(model=model)
        for chunk in self._store.read(digest, CHUNK_BYTES):
            yield R.DownloadArtifactResponse(chunk=chunk)


def _receive(
    parts: Iterable[R.RegisterModelRequest], artifact: StagedFile, reference: StagedFile
) -> types_pb2.ModelDescription:
    """The description (first, once), with the artifact's and reference data's chunks staged."""
    description = None
    for message in parts:
        part = message.WhichOneof("part")
        if part == "description":
            if description is not None:
                raise InvalidArgument("the description was sent twice; send it once, first")
            description = validate_description(message.description)
            continue
        if description is None:
            raise InvalidArgument("the first message must carry the model description")
        if part is None:
            raise InvalidArgument("empty RegisterModelRequest: set description, artifact_chunk or reference_data_chunk")
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
