"""Drives a runtime's REST endpoint with the unmodified tritonclient.http (its own process, as
the gRPC check): health, metadata, configuration, statistics, and inference with JSON and with
binary tensor data both ways, each compared to onnxruntime. Exits non-zero on any mismatch.

    python triton_http_check.py HOST:PORT IRIS.onnx
"""

import sys

import numpy as np
import onnxruntime as ort
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

url, iris_path = sys.argv[1], sys.argv[2]
client = th.InferenceServerClient(url)
assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
assert not client.is_model_ready("no-such-model")
metadata = client.get_model_metadata("iris")
assert [i["name"] for i in metadata["inputs"]] == ["X"] and metadata["inputs"][0]["shape"] == [-1, 4], metadata
config = client.get_model_config("iris")
assert config["max_batch_size"] > 0 and config["input"][0]["dims"] == [4], config

rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)
labels, probabilities = ort.InferenceSession(iris_path, providers=["CPUExecutionProvider"]).run(None, {"X": rows})
for binary_in in (False, True):
    for binary_out in (False, True):
        x = th.InferInput("X", list(rows.shape), "FP32")
        x.set_data_from_numpy(rows, binary_data=binary_in)
        wanted = [th.InferRequestedOutput(n, binary_data=binary_out) for n in ("label", "probabilities")]
        result = client.infer("iris", [x], outputs=wanted, request_id=f"h-{binary_in}-{binary_out}")
        assert result.get_response()["id"] == f"h-{binary_in}-{binary_out}"
        assert np.array_equal(result.as_numpy("label"), labels), (binary_in, binary_out)
        # JSON carries float32 values as their shortest decimal form, which reads back exactly.
        assert np.array_equal(result.as_numpy("probabilities"), probabilities), (binary_in, binary_out)

# Every datatype through the identity models, as binary data and as JSON (where tritonclient
# sends FP16 as binary only, so the JSON round uses the model without it).
DTYPES = {"BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
          "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64, "FP16": np.float16,
          "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_}  # fmt: skip
for model, binary in (("identity", True), ("identity-typed", False)):
    values, tensors, outputs = {}, [], []
    for datatype, dtype in DTYPES.items():
        if datatype == "FP16" and not binary:
            continue
        if datatype == "BYTES":
            values[datatype] = np.array([["a", "bé", ""], ["x", "yz", "0"]], dtype=np.object_)
        else:
            values[datatype] = np.array([[1, 0, 3], [4, 5, 0]]).astype(dtype)
        tensor = th.InferInput(f"in_{datatype}", [2, 3], datatype)
        tensor.set_data_from_numpy(values[datatype], binary_data=binary)
        tensors.append(tensor)
        outputs.append(th.InferRequestedOutput(f"out_{datatype}", binary_data=binary))
    result = client.infer(model, tensors, outputs=outputs)
    for datatype, sent in values.items():
        got = result.as_numpy(f"out_{datatype}")
        if datatype == "BYTES":
            got = np.array([v.decode() if isinstance(v, bytes) else v for v in got.reshape(-1)]).reshape(got.shape)
            assert (got == sent.astype(str)).all(), (model, got)
        else:
            assert got.dtype == sent.dtype and np.array_equal(got, sent), (model, datatype, got)

stats = client.get_inference_statistics("iris")
assert stats["model_stats"][0]["inference_stats"]["success"]["count"] >= 4, stats

try:  # a wrong shape: the reason, as HTTP 400
    bad = th.InferInput("X", [1, 4], "FP32")
    bad.set_data_from_numpy(rows[:1])
    bad.set_shape([2, 4])  # one row of data under a two-row shape
    client.infer("iris", [bad])
except InferenceServerException as err:
    assert "needs 8 elements" in str(err) and err.status() == "400", (err, err.status())
else:
    raise AssertionError("a tensor with fewer elements than its shape was accepted")
print("ok")
