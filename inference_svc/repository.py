"""The models one runtime worker serves: loaded from the registry (cached on disk by sha256) or
from a file:// or s3:// URI, each with its own ONNX session and dynamic batcher."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from inference_svc.batcher import DynamicBatcher
from inference_svc.cores import LongCalls
from inference_svc.credentials import RuntimeCredentials
from inference_svc.metrics import RuntimeMetrics
from inference_svc.session import OnnxModel
from inference_svc.settings import BatchPolicy, RuntimeSettings
from inference_svc.stats import ModelStats
from mlaas.errors import FailedPrecondition, InvalidArgument, NotFound
from mlaas.refs import parse_ref

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    name: str
    version: str
    sha256: str
    source: str
    model: OnnxModel
    batcher: DynamicBatcher
    stats: ModelStats
    policy: BatchPolicy


@dataclass
class Trial:
    """A challenger loaded beside a served model: in shadow it answers every request too (kept
    for the Monitor, not returned); as a canary it answers `canary_share` of them, the served
    model answering those in shadow."""

    challenger: LoadedModel
    mode: str  # SHADOW or CANARY
    canary_share: float = 0.0


SHADOW, CANARY = "shadow", "canary"


def _inputs(loaded: LoadedModel) -> list[tuple[str, str]]:
    return [(t.name, t.datatype) for t in loaded.model.signature.inputs]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ModelRepository:
    def __init__(
        self, settings: RuntimeSettings, metrics: RuntimeMetrics, long_calls: LongCalls | None = None,
        credentials: RuntimeCredentials | None = None,
    ):  # fmt: skip
        self._settings = settings
        self._credentials = credentials or RuntimeCredentials(settings.registry_token)
        self._metrics = metrics
        self._long_calls = long_calls  # shared with the runtime's other workers
        self._models: dict[str, LoadedModel] = {}
        self._trials: dict[str, Trial] = {}
        self._unavailable: dict[str, str] = {}
        self._lock = asyncio.Lock()
        settings.cache_dir.mkdir(parents=True, exist_ok=True)

    # -- lookup -----------------------------------------------------------------------------

    def get(self, name: str, version: str = "") -> LoadedModel:
        loaded = self._models.get(name)
        if loaded is None:
            served = ", ".join(sorted(self._models)) or "none"
            raise NotFound(f"model {name!r} is not loaded here (serving: {served})")
        if version and version != loaded.version:
            raise NotFound(f"model {name!r} version {version} is not loaded (serving version {loaded.version})")
        return loaded

    def all(self) -> list[LoadedModel]:
        return list(self._models.values())

    def trial(self, name: str) -> Trial | None:
        return self._trials.get(name)

    def unavailable(self) -> dict[str, str]:
        return dict(self._unavailable)

    # -- loading ----------------------------------------------------------------------------

    def _fetch_from_registry(self, ref: str) -> tuple[str, str, str, Path]:
        """(name, version, sha256, local path) of a registry reference, downloading on a miss."""
        from mlaas.client import RegistryClient

        if not self._settings.registry_address:
            raise FailedPrecondition("no registry configured (--registry or MLAAS_REGISTRY_ADDR)")
        token = self._credentials.for_version(parse_ref(ref).version)  # a trial's challenger has its own
        with RegistryClient(self._settings.registry_address, token) as registry:
            model = registry.get(ref)
            sha = model.artifact.sha256
            path = self._settings.cache_dir / f"{sha}.onnx"
            if not path.exists():
                registry.download(f"{model.description.name}:{model.version}", path)
                if _sha256(path) != sha:
                    path.unlink()
                    raise FailedPrecondition(f"downloaded artifact of {ref} does not match its sha256")
        return model.description.name, str(model.version), sha, path

    def _fetch_uri(self, uri: str, confined: bool) -> tuple[str, Path]:
        """(sha256, local path) of a file:// or s3:// artifact. `confined` (a RepositoryModelLoad
        from a caller): only under MLAAS_MODEL_ROOTS or from MLAAS_MODEL_BUCKETS, and one answer
        for missing, unreadable and not allowed, so that callers cannot probe the host's files."""
        parsed = urlparse(uri)
        unavailable = InvalidArgument(
            f"model uri {uri}: no readable model there, or not under the allowed roots "
            "(MLAAS_MODEL_ROOTS, MLAAS_MODEL_BUCKETS)"
        )
        if parsed.scheme == "file":
            path = Path(parsed.path).resolve()
            if confined and not any(path.is_relative_to(root.resolve()) for root in self._settings.model_roots):
                raise unavailable
            try:
                return _sha256(path), path
            except OSError:  # missing, a directory, unreadable: the same answer
                raise unavailable from None
        if parsed.scheme == "s3":
            if confined and parsed.netloc not in self._settings.model_buckets:
                raise unavailable
            import boto3

            partial = self._settings.cache_dir / f"download-{uuid.uuid4().hex}.partial"
            try:
                boto3.client("s3", endpoint_url=self._settings.data_refs.s3_endpoint_url).download_file(
                    parsed.netloc, parsed.path.lstrip("/"), str(partial)
                )
                sha = _sha256(partial)
                path = self._settings.cache_dir / f"{sha}.onnx"
                shutil.move(partial, path)
            finally:
                partial.unlink(missing_ok=True)
            return sha, path
        raise InvalidArgument(f"model uri {uri!r}: use file:// or s3://")

    async def load_ref(self, ref: str) -> LoadedModel:
        name, version, sha, path = await asyncio.to_thread(self._fetch_from_registry, ref)
        return await self._install(name, version, sha, path, f"registry:{ref}")

    async def load_trial(self, ref: str, mode: str, canary_share: float = 0.0) -> Trial:
        """Loads a registry reference as the challenger of the model it names, which must be
        served here; a trial it had before ends."""
        name, version, sha, path = await asyncio.to_thread(self._fetch_from_registry, ref)
        served = self._models.get(name)
        if served is None:
            raise FailedPrecondition(f"model {name!r} is not served here: a trial needs its served version")
        challenger = await self._build(name, version, sha, path, f"registry:{ref}")
        if _inputs(challenger) != _inputs(served):
            await challenger.batcher.close()
            raise FailedPrecondition(
                f"{name} version {version} takes other inputs than version {served.version}: a challenger answers "
                "the same requests"
            )
        trial = Trial(challenger, mode, canary_share)
        async with self._lock:
            before, self._trials[name] = self._trials.get(name), trial
        if before is not None:
            await before.challenger.batcher.close()
        log.info("trying %s version %s in %s beside version %s", name, version, mode, self._models[name].version)
        return trial

    async def end_trial(self, name: str) -> None:
        """The model's challenger goes (what it has queued finishes); nothing if it has none."""
        async with self._lock:
            trial = self._trials.pop(name, None)
        if trial is not None:
            await trial.challenger.batcher.close()
            log.info("trial of %s version %s ended", name, trial.challenger.version)

    async def load_uri(self, name: str, uri: str, confined: bool = False) -> LoadedModel:
        sha, path = await asyncio.to_thread(self._fetch_uri, uri, confined)
        return await self._install(name, "1", sha, path, uri)

    async def _install(self, name: str, version: str, sha: str, path: Path, source: str) -> LoadedModel:
        """Serves the version from now on; the challenger of a trial is promoted as it is loaded."""
        async with self._lock:
            current = self._models.get(name)
            if current is not None and current.sha256 == sha and current.version == version:
                return current
            trial = self._trials.get(name)
            if trial is not None and (trial.challenger.sha256, trial.challenger.version) == (sha, version):
                loaded = self._trials.pop(name).challenger
            else:
                try:
                    loaded = await self._build(name, version, sha, path, source)
                except FailedPrecondition as err:
                    self._unavailable[name] = err.message
                    raise
            self._models[name] = loaded
            self._unavailable.pop(name, None)
        if current is not None:
            await current.batcher.close()  # requests already queued on the old version finish
        log.info("serving %s version %s (%s, sha256 %s)", name, version, source, sha[:12])
        return loaded

    async def _build(self, name: str, version: str, sha: str, path: Path, source: str) -> LoadedModel:
        """A version loaded and warmed up, with its batcher; FailedPrecondition if ONNX Runtime
        cannot load it."""
        try:
            settings = self._settings
            model = await asyncio.to_thread(OnnxModel, path, settings.intra_op_threads, settings.wide_call_threads)
        except Exception as err:
            raise FailedPrecondition(f"model {name}: onnxruntime cannot load it: {err}") from None
        base = self._settings.batch
        policy = BatchPolicy(
            max_batch_size=base.max_batch_size if model.signature.batchable else 1,
            max_queue_delay_us=base.max_queue_delay_us,
            max_queue_rows=base.max_queue_rows,
            batchable=model.signature.batchable,
            inline_compute_us=base.inline_compute_us,
        )
        warm_up_ns = await asyncio.to_thread(model.warm_up)
        stats = ModelStats()
        batcher = DynamicBatcher(
            model.run, policy, stats, name, observer=_BatchObserver(self._metrics, name),
            wide_runner=model.run_wide if model.has_wide else None, long_calls=self._long_calls,
        )  # fmt: skip
        if warm_up_ns is not None:
            batcher.expect(1, warm_up_ns)
        return LoadedModel(name, version, sha, source, model, batcher, stats, policy)

    async def unload(self, name: str) -> None:
        await self.end_trial(name)
        async with self._lock:
            loaded = self._models.pop(name, None)
            failed = self._unavailable.pop(name, None)
        if loaded is None and failed is not None:
            return  # what a failed load left behind
        if loaded is None:
            raise NotFound(f"model {name!r} is not loaded here")
        await loaded.batcher.close()
        log.info("unloaded %s", name)

    async def refresh_gauges(self, interval: float = 1.0) -> None:
        """Keeps the queued-rows gauge current without touching it per batch."""
        while True:
            for loaded in self._models.values():
                self._metrics.queued_rows.labels(loaded.name).set(loaded.batcher.queued_rows)
            await asyncio.sleep(interval)

    async def close(self) -> None:
        for name in list(self._models):
            await self.unload(name)


class _BatchObserver:
    def __init__(self, metrics: RuntimeMetrics, model: str):
        self._batch = metrics.buffered(metrics.batch_size.labels(model))
        self._queue = metrics.buffered(metrics.queue_delay.labels(model))

    def batch(self, rows: int, requests: int, queued_rows: int) -> None:
        self._batch.observe(rows)

    def queued(self, seconds: float) -> None:
        self._queue.observe(seconds)
