"""Loads what the Monitor needs about a model version from the registry: its description, its
reference data, and the model's own outputs on that data (the prediction-drift reference,
computed here with ONNX Runtime). Cached per version on disk by the registry's sha256."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from mlaas.client import RegistryClient
from mlaas.errors import FailedPrecondition
from mlaas.retraining.rounds import first_output
from mlaas.v1 import registry_pb2, types_pb2
from monitor_svc.monitoring import ModelContext


class ContextLoader:
    def __init__(self, registry: RegistryClient, cache_dir: Path):
        """`registry`: a client calling as the Monitor."""
        self._registry = registry
        self._cache = cache_dir
        self._loaded: dict[tuple[str, int], ModelContext] = {}
        self._lock = threading.Lock()
        cache_dir.mkdir(parents=True, exist_ok=True)

    def load(self, name: str, version: int) -> ModelContext:
        with self._lock:
            if (name, version) not in self._loaded:
                self._loaded[name, version] = self._fetch(name, version)
            return self._loaded[name, version]

    def _fetch(self, name: str, version: int) -> ModelContext:
        ref = types_pb2.ModelRef(name=name, version=version)
        model = self._registry.get(ref)
        if not model.reference_data.sha256:
            raise FailedPrecondition(f"{name}:{version} has no reference data to detect drift against")
        artifact = self._cache / f"{model.artifact.sha256}.onnx"
        reference_file = self._cache / f"{model.reference_data.sha256}.npy"
        if not artifact.exists():
            self._registry.download(ref, artifact)
        if not reference_file.exists():
            self._registry.download(ref, reference_file, registry_pb2.ARTIFACT_KIND_REFERENCE_DATA)
        reference = np.load(reference_file, allow_pickle=False).astype(np.float64)
        reference = reference.reshape(reference.shape[0], -1)
        return ModelContext(
            name=name,
            version=version,
            task=model.description.task,
            feature_names=tuple(model.description.feature_names),
            reference=reference,
            reference_predictions=first_output(artifact, reference),
            recipe=model.description.recipe,
            artifact=artifact,
            owner=model.owner,
        )
