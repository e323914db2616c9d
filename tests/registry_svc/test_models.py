"""The registry's core in process (models.py), as MLServer tests its data plane: registrations
from their parts, what a refused one leaves (nothing), whose reference data is whose, and the
deletion guard asked only for a caller who may delete."""

from __future__ import annotations

import io

import numpy as np
import pytest

from mlaas.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from mlaas.services.settings import ServerSettings
from mlaas.v1 import registry_pb2, types_pb2
from registry_svc.artifacts import LocalArtifactStore
from registry_svc.catalog import Caller, Catalog
from registry_svc.models import ModelRegistry
from registry_svc.settings import RegistrySettings
from tests.conftest import tiny_onnx

R = registry_pb2
ALPHA, BETA = Caller("alpha"), Caller("beta")


class Guard:
    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []
        self.why: str | None = "deployment d-1 serves it"

    def refusal(self, name: str, version: int) -> str | None:
        self.asked.append((name, version))
        return self.why


@pytest.fixture
def registry(tmp_path):
    settings = RegistrySettings(server=ServerSettings(), data_dir=tmp_path)
    store, guard = LocalArtifactStore(tmp_path / "blobs"), Guard()
    return ModelRegistry(settings, Catalog(tmp_path / "registry.sqlite3"), store, guard), store, guard, settings


def parts(name: str, artifact: bytes, reference: np.ndarray | None = None, public: bool = False):
    visibility = types_pb2.VISIBILITY_PUBLIC if public else types_pb2.VISIBILITY_PRIVATE
    yield R.RegisterModelRequest(
        description=types_pb2.ModelDescription(name=name, task=types_pb2.TASK_REGRESSION, visibility=visibility)
    )
    yield R.RegisterModelRequest(artifact_chunk=artifact)
    if reference is not None:
        data = io.BytesIO()
        np.save(data, reference)
        yield R.RegisterModelRequest(reference_data_chunk=data.getvalue())


def test_the_same_registration_twice_is_one_version_and_one_blob(registry):
    models, store, _, _ = registry
    first = models.register(parts("m", tiny_onnx()), ALPHA)
    again = models.register(parts("m", tiny_onnx()), ALPHA)
    assert first.created and not again.created and again.model.version == first.model.version == 1
    assert models.register(parts("m", tiny_onnx(seed=1)), ALPHA).model.version == 2
    assert len(list(store.digests())) == 2


def test_a_refused_registration_leaves_nothing_behind(registry):
    models, store, _, settings = registry

    def twice():
        yield from parts("m", tiny_onnx())
        yield R.RegisterModelRequest(description=types_pb2.ModelDescription(name="m"))

    refused = [
        (twice(), "the description was sent twice"),
        (iter([R.RegisterModelRequest(artifact_chunk=b"x")]), "the first message must carry the model description"),
        (parts("m", b"not onnx"), "ONNX"),
        (parts("m", tiny_onnx(), reference=np.ones((3, 5), np.float32)), "reference data"),
        (parts("m", tiny_onnx(), reference=np.full((3, 4), np.nan, np.float32)), "reference data"),
    ]
    for given, why in refused:
        with pytest.raises(InvalidArgument, match=why):
            models.register(given, ALPHA)
    assert list(store.digests()) == [] and list(settings.staging_dir.iterdir()) == []
    with pytest.raises(NotFound):
        models.get(types_pb2.ModelRef(name="m"), ALPHA)


def test_reference_data_is_its_owners_even_on_a_public_model(registry):
    models, _, _, _ = registry
    reference = np.arange(12, dtype=np.float32).reshape(3, 4)
    models.register(parts("shared", tiny_onnx(), reference, public=True), ALPHA)
    ask = R.DownloadArtifactRequest(ref=types_pb2.ModelRef(name="shared"), kind=R.ARTIFACT_KIND_REFERENCE_DATA)

    def downloaded(caller: Caller) -> np.ndarray:
        head, *chunks = models.download(ask, caller)
        assert head.model.reference_rows == 3
        return np.load(io.BytesIO(b"".join(c.chunk for c in chunks)))

    assert np.array_equal(downloaded(ALPHA), reference)
    assert np.array_equal(downloaded(Caller("job", only="shared:1", reads_reference=True)), reference)
    with pytest.raises(PermissionDenied, match="the reference data of shared:1 is its owner's"):
        downloaded(BETA)
    assert models.get(types_pb2.ModelRef(name="shared"), BETA).reference_rows == 3  # its size, not its rows
    _, *chunks = models.download(R.DownloadArtifactRequest(ref=ask.ref), BETA)  # the model itself is public
    assert b"".join(c.chunk for c in chunks) == tiny_onnx()


def test_the_deletion_guard_is_asked_only_for_a_caller_who_may_delete(registry):
    models, store, guard, _ = registry
    models.register(parts("m", tiny_onnx()), ALPHA)
    with pytest.raises(NotFound):
        models.delete("m", 1, BETA)  # alpha's private model: a stranger learns nothing, not even from the guard
    assert guard.asked == []
    with pytest.raises(FailedPrecondition, match="m:1 cannot be deleted: deployment d-1 serves it"):
        models.delete("m", 1, ALPHA)
    guard.why = None
    models.delete("m", 1, ALPHA)
    assert guard.asked == [("m", 1), ("m", 1)] and list(store.digests()) == []
    with pytest.raises(InvalidArgument, match="version must be 1 or more"):
        models.delete("m", 0, ALPHA)
