"""Checks on what a client uploads: the description, the ONNX artifact, the reference data.

Every failure is an InvalidArgument whose message says what is wrong and how to fix it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from mlaas.datatypes import NUMPY_TO_OIP, oip_datatype
from mlaas.errors import InvalidArgument
from mlaas.recipes import validate_recipe
from mlaas.v1 import types_pb2

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/=-]{0,62}$")
FAMILY = re.compile(r"^[a-z0-9_]{0,63}$")
MAX_TAGS = 32
MAX_METRICS = 64

MIB = 2**20


def check_name(name: str) -> None:
    if not NAME.match(name):
        shown = name if len(name) <= 80 else f"{name[:80]}... ({len(name)} characters)"  # the answer must fit a status
        raise InvalidArgument(
            f"model name {shown!r} is invalid: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def check_alias(alias: str) -> None:
    if not ALIAS.match(alias):
        raise InvalidArgument(
            f"alias {alias!r} is invalid: use 1-63 lowercase letters, digits, '_' or '-', starting with a letter"
        )


# What one replica or training job may ask for: beyond any machine this mesh will place on.
RESOURCE_MAXIMA = {"cpu_millicores": 1_024_000, "memory_bytes": 16 * 2**40, "gpus": 64}


def _check_resources(field: str, res: types_pb2.Resources) -> None:
    for attr, maximum in RESOURCE_MAXIMA.items():
        if getattr(res, attr) < 0:
            raise InvalidArgument(f"{field}.{attr} must not be negative")
        if getattr(res, attr) > maximum:
            raise InvalidArgument(f"{field}.{attr} must be at most {maximum}")


def validate_description(desc: types_pb2.ModelDescription) -> types_pb2.ModelDescription:
    """A normalised copy of the description; raises InvalidArgument."""
    out = types_pb2.ModelDescription()
    out.CopyFrom(desc)
    check_name(out.name)
    if out.task == types_pb2.TASK_UNSPECIFIED:
        raise InvalidArgument("description.task is required (e.g. TASK_CLASSIFICATION, TASK_REGRESSION)")
    if not FAMILY.match(out.family):
        raise InvalidArgument(f"description.family {out.family!r}: use lowercase snake_case, e.g. random_forest")
    if len(out.tags) > MAX_TAGS:
        raise InvalidArgument(f"at most {MAX_TAGS} tags")
    for tag in out.tags:
        if not TAG.match(tag):
            raise InvalidArgument(f"tag {tag!r} is invalid: letters, digits and . _ : / = -, at most 63")
    if len(out.metrics) > MAX_METRICS:
        raise InvalidArgument(f"at most {MAX_METRICS} metrics")
    for metric in out.metrics:
        if not metric.name:
            raise InvalidArgument("every metric needs a name")
        if not math.isfinite(metric.value):
            raise InvalidArgument(f"metric {metric.name!r} has a non-finite value")
    _check_resources("run_resources", out.run_resources)
    _check_resources("train_resources", out.train_resources)
    if out.explainability.level == types_pb2.EXPLAINABILITY_LEVEL_UNSPECIFIED:
        out.explainability.level = types_pb2.EXPLAINABILITY_LEVEL_NONE
    if out.visibility == types_pb2.VISIBILITY_UNSPECIFIED:
        out.visibility = types_pb2.VISIBILITY_PUBLIC
    validate_recipe(out.recipe)
    del out.tags[:]
    out.tags.extend(sorted(set(desc.tags)))
    return out


# What a replica's runtime itself takes before its model (an iris runtime with one worker: 205 MB
# resident), and what a training job's process takes before its data (the warm trainer: 240 MB).
# Docker and Kubernetes enforce these as the container's memory limit.
RUNTIME_MEMORY = 256 * MIB


def fill_default_resources(desc: types_pb2.ModelDescription, artifact_bytes: int) -> None:
    """Resources the client left out, sized from the artifact (documented in the README)."""
    if desc.run_resources.cpu_millicores == 0:
        desc.run_resources.cpu_millicores = 500
    if desc.run_resources.memory_bytes == 0:
        desc.run_resources.memory_bytes = RUNTIME_MEMORY + 4 * artifact_bytes
    if desc.train_resources.cpu_millicores == 0:
        desc.train_resources.cpu_millicores = 1000
    if desc.train_resources.memory_bytes == 0:
        desc.train_resources.memory_bytes = RUNTIME_MEMORY + 128 * MIB + 8 * artifact_bytes


def _tensor_spec(arg) -> types_pb2.TensorSpec:
    shape = [d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or [])]
    return types_pb2.TensorSpec(name=arg.name, datatype=oip_datatype(arg.type), shape=shape, onnx_type=arg.type)


def inspect_onnx(path: Path) -> types_pb2.Signature:
    """Validates the file as an ONNX model that onnxruntime can load; returns its signature."""
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path))
    except Exception as err:  # the checker raises several types, all meaning "not valid ONNX"
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InvalidArgument(f"artifact is not a valid ONNX model: {first_line}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise InvalidArgument(f"onnxruntime cannot load the artifact: {str(err).strip()[:500]}") from None
    return types_pb2.Signature(
        inputs=[_tensor_spec(a) for a in session.get_inputs()],
        outputs=[_tensor_spec(a) for a in session.get_outputs()],
    )


def tabular_input(signature: types_pb2.Signature) -> tuple[int, str] | None:
    """(feature count, datatype) when the model takes one 2-D tensor with a fixed width."""
    if len(signature.inputs) != 1:
        return None
    spec = signature.inputs[0]
    if len(spec.shape) != 2 or spec.shape[1] < 1:
        return None
    return int(spec.shape[1]), spec.datatype


def validate_reference_data(path: Path, signature: types_pb2.Signature) -> int:
    """Checks a .npy sample of training inputs against the signature; returns its row count."""
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as err:
        raise InvalidArgument(f"reference data must be a .npy array (numpy.save): {err}") from None
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[0] < 1:
        raise InvalidArgument(f"reference data must be a 2-D array of rows x features, got shape {data.shape}")
    if data.dtype not in NUMPY_TO_OIP or data.dtype.kind not in "biuf":
        raise InvalidArgument(f"reference data must be numeric, got dtype {data.dtype}")
    if data.dtype.kind == "f":
        for start in range(0, data.shape[0], 65536):  # a block at a time: the file is mapped, not read
            if not np.isfinite(data[start : start + 65536]).all():
                raise InvalidArgument("reference data must be finite: it holds NaN or infinite values")
    tabular = tabular_input(signature)
    if tabular and data.shape[1] != tabular[0]:
        raise InvalidArgument(
            f"reference data has {data.shape[1]} columns but the model input "
            f"{signature.inputs[0].name!r} takes {tabular[0]} features"
        )
    return int(data.shape[0])
