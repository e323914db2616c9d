"""The Open Inference Protocol's REST bodies <-> what the data plane takes and gives.

A request is JSON, optionally followed by Triton's binary tensor data extension: the header
`Inference-Header-Content-Length: N` says that the first N bytes are the JSON, and each input
with the parameter `binary_data_size` takes its bytes, in order, from what follows. JSON `data`
(flat or nested, row-major) becomes the same raw bytes a gRPC client would send, so both
protocols meet one decoder (codec.py) with the same checks and limits.

An answer's outputs go back as JSON `data` (flat, row-major), or as binary data after the JSON
when the request asks for it (`binary_data_output` for all, or an output's `binary_data`).
"""

from __future__ import annotations

import numpy as np
import orjson

from inference_svc.wire import Answer, raw_output
from mlaas.datatypes import OIP_TO_NUMPY
from mlaas.errors import InvalidArgument, ResourceExhausted
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.tensors import encode_bytes

HEADER_LENGTH = "inference-header-content-length"
BINARY_SIZE = "binary_data_size"
# The request-wide and per-output ways to ask for binary outputs.
BINARY_OUTPUT = "binary_data_output"
BINARY_DATA = "binary_data"


def json_object(data: bytes | memoryview, empty_is_nothing: bool = False) -> dict:
    """A JSON object; InvalidArgument with the reason for anything else (with
    `empty_is_nothing`, an empty body is an empty object, as for repository calls)."""
    if empty_is_nothing and not bytes(data).strip():
        return {}
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise InvalidArgument(f"the body is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise InvalidArgument("the body must be a JSON object")
    return value


def set_parameters(target, parameters, where: str) -> None:
    """JSON parameters as InferParameters (bool, integer, number or string)."""
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise InvalidArgument(f"{where}: parameters must be an object")
    for key, value in parameters.items():
        slot = target[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int) and -(2**63) <= value < 2**63:
            slot.int64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        elif isinstance(value, str):
            slot.string_param = value
        else:
            raise InvalidArgument(f"{where}: parameter {key!r} must be a bool, a number or a string")


def _flat_strings(data: list, at_most: int) -> list[bytes]:
    """Nested lists of strings, flattened row-major (without recursion: JSON may nest deeper
    than Python's stack)."""
    out: list[bytes] = []
    stack = [iter(data)]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        elif len(out) == at_most:
            raise ResourceExhausted(f"more than {at_most} BYTES elements (MLAAS_MAX_BYTES_ELEMENTS)")
        elif isinstance(item, str):
            out.append(item.encode())
        elif isinstance(item, bool | int | float):
            out.append(str(item).encode())
        else:
            raise ValueError(f"a BYTES element must be a string, not {type(item).__name__}")
    return out


_END = object()


def _json_data(name: str, datatype: str, data, max_bytes_elements: int) -> bytes:
    """An input's JSON `data` as its raw bytes (what codec.decode_array reads)."""
    if not isinstance(data, list):
        data = [data]
    try:
        if datatype == "BYTES":
            return encode_bytes(np.array(_flat_strings(data, max_bytes_elements), dtype=np.object_))
        dtype = OIP_TO_NUMPY.get(datatype)
        if dtype is None:
            raise InvalidArgument(f"input {name!r}: unknown datatype {datatype!r}")
        return np.asarray(data, dtype=dtype).astype(dtype.newbyteorder("<"), copy=False).tobytes()
    except (ValueError, TypeError, OverflowError, RecursionError) as err:
        raise InvalidArgument(f"input {name!r}: {datatype} data cannot be read: {err}") from None


def byte_count(text: str | None) -> int | None:
    """A header's count of bytes, None when absent; InvalidArgument unless plain ASCII digits of
    a sane length (str.isdigit also takes "²", and int() refuses 4,300 digits and more)."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise InvalidArgument(f"{text[:40]!r} is not a number of bytes")
    return int(text)


def parse_request(
    body: bytes, header_length: int | None, model: str, version: str, max_json_bytes: int, max_bytes_elements: int
) -> tuple[oip.ModelInferRequest, list[bytes | memoryview]]:
    """(the request without its tensors' bytes, each input's raw bytes)."""
    json_end = len(body) if header_length is None else header_length
    if not 0 <= json_end <= len(body):
        raise InvalidArgument(f"{HEADER_LENGTH} is {header_length}, but the body has {len(body)} bytes")
    if json_end > max_json_bytes:
        raise ResourceExhausted(
            f"the JSON part is {json_end} bytes; at most {max_json_bytes} (MLAAS_MAX_JSON_BYTES): "
            "send large tensors as binary data (the Inference-Header-Content-Length extension)"
        )
    view = memoryview(body)
    document = json_object(view[:json_end])
    request = oip.ModelInferRequest(model_name=model, model_version=version)
    identifier = document.get("id", "")
    if not isinstance(identifier, str):
        raise InvalidArgument("id must be a string")
    request.id = identifier
    set_parameters(request.parameters, document.get("parameters"), "the request")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArgument("inputs must be a non-empty list")
    raws: list[bytes | memoryview] = []
    offset = json_end
    for position, spec in enumerate(inputs):
        if not isinstance(spec, dict):
            raise InvalidArgument(f"inputs[{position}] must be an object")
        name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise InvalidArgument(f"inputs[{position}] needs a string name and datatype")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise InvalidArgument(f"input {name!r}: shape must be a list of integers")
        if any(not 0 <= d < 2**63 for d in shape):
            raise InvalidArgument(f"input {name!r}: shape {shape} has a negative or huge dimension")
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        set_parameters(tensor.parameters, spec.get("parameters"), f"input {name!r}")
        if "data_uri" in tensor.parameters:
            raws.append(b"")  # loaded by the data plane (data_refs.py)
        elif BINARY_SIZE in tensor.parameters:
            if tensor.parameters[BINARY_SIZE].WhichOneof("parameter_choice") != "int64_param":
                raise InvalidArgument(f"input {name!r}: {BINARY_SIZE} must be an integer")
            size = tensor.parameters[BINARY_SIZE].int64_param
            if size < 0 or offset + size > len(body):
                raise InvalidArgument(f"input {name!r}: {BINARY_SIZE} {size} runs past the end of the body")
            raws.append(view[offset : offset + size])
            offset += size
        elif "data" in spec:
            raws.append(_json_data(name, datatype, spec["data"], max_bytes_elements))
        else:
            raise InvalidArgument(f"input {name!r} has no data (JSON data, {BINARY_SIZE} or a data_uri)")
    if offset != len(body):
        raise InvalidArgument(f"{len(body) - offset} bytes of binary data follow the JSON that no input claims")
    outputs = document.get("outputs") or []
    if not isinstance(outputs, list):
        raise InvalidArgument("outputs must be a list")
    for position, spec in enumerate(outputs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidArgument(f"outputs[{position}] needs a string name")
        wanted = request.outputs.add(name=spec["name"])
        set_parameters(wanted.parameters, spec.get("parameters"), f"output {spec['name']!r}")
    return request, raws


def _binary_outputs(request: oip.ModelInferRequest) -> tuple[bool, dict[str, bool]]:
    """Whether outputs go as binary data: by default, and output by output."""
    default = BINARY_OUTPUT in request.parameters and request.parameters[BINARY_OUTPUT].bool_param
    chosen = {o.name: o.parameters[BINARY_DATA].bool_param for o in request.outputs if BINARY_DATA in o.parameters}
    return default, chosen


def _json_values(array: np.ndarray, datatype: str):
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    return np.ascontiguousarray(flat)  # orjson writes contiguous numeric arrays itself


def answer_body(answer: Answer, request: oip.ModelInferRequest) -> tuple[bytes, int | None]:
    """(the response body, the length of its JSON part when binary data follows it)."""
    default, chosen = _binary_outputs(request)
    head = answer.head
    outputs, binaries = [], []
    for output, array in zip(head.outputs, answer.arrays, strict=True):
        entry: dict = {"name": output.name, "datatype": output.datatype, "shape": list(output.shape)}
        if chosen.get(output.name, default):
            raw = raw_output(array, output.datatype)
            entry["parameters"] = {BINARY_SIZE: len(raw)}
            binaries.append(raw)
        else:
            entry["data"] = _json_values(array, output.datatype)
        outputs.append(entry)
    document: dict[str, object] = {"model_name": head.model_name, "model_version": head.model_version}
    if head.id:
        document["id"] = head.id
    document["outputs"] = outputs
    text = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not binaries:
        return text, None
    return b"".join([text, *binaries]), len(text)
