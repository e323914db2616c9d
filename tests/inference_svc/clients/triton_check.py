"""Drives a runtime with the unmodified tritonclient.grpc (run as its own process: tritonclient
and the mesh's inference stubs cannot share one). Exits non-zero with a message on any mismatch.

    python triton_check.py ADDRESS MODEL.onnx STREAM_COUNT
"""

import queue
import sys

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as tc

address, model_path, stream_count = sys.argv[1], sys.argv[2], int(sys.argv[3])
session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
client = tc.InferenceServerClient(address)
assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
metadata = client.get_model_metadata("iris")
assert [i.name for i in metadata.inputs] == ["X"], metadata
config = client.get_model_config("iris").config
assert config.max_batch_size > 0 and config.input[0].dims == [4], config

rng = np.random.default_rng(0)
rows = (rng.random((stream_count, 4), dtype=np.float32) * [4, 2, 6, 2.5] + [4.3, 2.0, 1.0, 0.1]).astype(np.float32)
# Reference one row at a time, as the requests are sent. The runtime may stack concurrent
# requests into one call, and a GEMM over 8 rows can round the last float32 bit differently from
# one over 1 row (softmax then spreads it to ~4e-7), so probabilities are compared to 1e-5
# relative / 1e-6 absolute; labels must be identical.
singles = [session.run(None, {"X": rows[i : i + 1]}) for i in range(stream_count)]
expected_labels = np.concatenate([labels for labels, _ in singles])
expected_probabilities = np.concatenate([probabilities for _, probabilities in singles])
eight = session.run(None, {"X": rows[:8]})

x = tc.InferInput("X", [8, 4], "FP32")
x.set_data_from_numpy(rows[:8])
result = client.infer("iris", [x], outputs=[tc.InferRequestedOutput("probabilities")], request_id="unary-1")
assert result.get_response().id == "unary-1"
assert np.array_equal(result.as_numpy("probabilities"), eight[1])  # same 8-row call: bit-identical
assert result.as_numpy("label") is None  # only the requested output came back

answers: queue.Queue = queue.Queue()
client.start_stream(callback=lambda result, error: answers.put((result, error)))
for i in range(stream_count):
    x = tc.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(rows[i : i + 1])
    client.async_stream_infer("iris", [x], request_id=str(i))
seen = set()
failure = None
try:
    for _ in range(stream_count):
        result, error = answers.get(timeout=120)
        if error is not None:
            failure = f"stream error: {error}"
            break
        i = int(result.get_response().id)
        seen.add(i)
        if not np.array_equal(result.as_numpy("label"), expected_labels[i : i + 1]):
            failure = f"label mismatch at {i}"
            break
        got = result.as_numpy("probabilities")
        if not np.allclose(got, expected_probabilities[i : i + 1], rtol=1e-5, atol=1e-6):
            failure = f"probabilities mismatch at {i}: {got} vs {expected_probabilities[i]}"
            break
finally:
    client.stop_stream(cancel_requests=failure is not None)
if failure:
    sys.exit(failure)
assert seen == set(range(stream_count)), "missing stream responses"
print(f"ok {stream_count}")
