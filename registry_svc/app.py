"""Wires the registry together from its settings."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from pathlib import Path

from mlaas.client import SchedulerClient
from mlaas.services.auth import REGISTRY, Authenticator
from mlaas.services.live_scopes import LiveScopes
from mlaas.services.periodic import Periodic
from mlaas.services.server import MeshServer, Service
from mlaas.v1 import registry_pb2, registry_pb2_grpc
from registry_svc.artifacts import ArtifactStore, LocalArtifactStore, open_store
from registry_svc.catalog import Catalog
from registry_svc.guards import AllowAll, DeletionGuard, SchedulerGuard
from registry_svc.models import ModelRegistry
from registry_svc.servicer import RegistryServicer
from registry_svc.settings import RegistrySettings

log = logging.getLogger(__name__)

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
# Blobs younger than this may belong to an upload another process has not committed yet.
ORPHAN_MIN_AGE_SECONDS = 3600


# An upload's files are written at every chunk; untouched this long, its process is gone.
ABANDONED_UPLOAD_SECONDS = 600


def remove_abandoned_uploads(staging_dir: Path, store: ArtifactStore) -> int:
    """Deletes what uploads killed mid-way left: staged `.part` files and half-copied blobs."""
    leftovers = list(staging_dir.glob("*.part"))
    if isinstance(store, LocalArtifactStore):
        leftovers += store.root.glob("??/*.partial")
    removed = 0
    for path in leftovers:
        with contextlib.suppress(FileNotFoundError):  # finished or removed meanwhile
            if time.time() - path.stat().st_mtime > ABANDONED_UPLOAD_SECONDS:
                path.unlink()
                removed += 1
    if removed:
        log.info("removed %d files of abandoned uploads", removed)
    return removed


def collect_orphans(store: ArtifactStore, catalog: Catalog) -> int:
    """Deletes local blobs no version references (left by a crash between store and commit)."""
    if not isinstance(store, LocalArtifactStore):
        return 0
    referenced = catalog.referenced_digests()
    removed = 0
    for digest in list(store.digests()):
        if digest not in referenced and time.time() - store.path(digest).stat().st_mtime > ORPHAN_MIN_AGE_SECONDS:
            store.delete(digest)
            removed += 1
    return removed


def build_registry(
    settings: RegistrySettings, guard: DeletionGuard | None = None, authenticator: Authenticator | None = None
) -> MeshServer:
    authenticator = authenticator or Authenticator.for_server(settings.server, REGISTRY)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(settings.database_path)
    store = open_store(settings.artifact_store, settings.data_dir, settings.s3_endpoint_url)
    removed = collect_orphans(store, catalog)
    if removed:
        log.info("removed %d orphaned artifact blobs", removed)
    sweep = functools.partial(remove_abandoned_uploads, settings.staging_dir, store)
    sweep()
    # The scheduler, asked as the registry's role: before deleting a version that may be deployed,
    # and whether a minted credential's deployment or job still lives.
    scheduler = (
        SchedulerClient(settings.scheduler_address, settings.scheduler_token, timeout=10)
        if settings.scheduler_address
        else None
    )
    if guard is None:
        guard = SchedulerGuard(scheduler) if scheduler else AllowAll()
    scopes = LiveScopes(scheduler) if scheduler and authenticator.enabled else None
    servicer = RegistryServicer(ModelRegistry(settings, catalog, store, guard), authenticator, scopes)
    service = Service(SERVICE_NAME, servicer, registry_pb2_grpc.add_RegistryServiceServicer_to_server)
    server = MeshServer("registry", settings.server, [service], authenticator)
    # While it runs too: a registry that keeps running must not keep a killed client's 300 MB upload.
    Periodic("upload-sweeper", sweep, settings.sweep_seconds, server.stopped).start()
    return server
