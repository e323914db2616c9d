"""Drives a deployment through the scheduler's activator with the unmodified tritonclient.grpc
(its own process: tritonclient and the mesh's inference stubs cannot share one): CALLS unary
requests at once, then a stream of 20, each naming the deployment in the metadata. Prints
"ok" with the number answered, or exits non-zero with what went wrong. Also checks that a call
naming no deployment is INVALID_ARGUMENT with what to send.

    python triton_activator_check.py ACTIVATOR DEPLOYMENT_ID TOKEN|- CALLS
"""

import queue
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

address, deployment_id, token, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
headers = {"mlaas-deployment": deployment_id}
if token != "-":
    headers["authorization"] = f"Bearer {token}"
rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def infer(_: int) -> np.ndarray:
    client = tc.InferenceServerClient(address)
    x = tc.InferInput("X", list(rows.shape), "FP32")
    x.set_data_from_numpy(rows)
    return client.infer("iris", [x], headers=headers, client_timeout=90).as_numpy("label")


with ThreadPoolExecutor(calls) as pool:
    labels = list(pool.map(infer, range(calls)))
assert all(label.shape == (2,) for label in labels), labels

client = tc.InferenceServerClient(address)
answers: queue.Queue = queue.Queue()
client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=headers)
for i in range(20):
    x = tc.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(rows[:1])
    client.async_stream_infer("iris", [x], request_id=str(i))
streamed = set()
for _ in range(20):
    result, error = answers.get(timeout=90)
    assert error is None, error
    streamed.add(result.get_response().id)
client.stop_stream()
assert streamed == {str(i) for i in range(20)}, streamed

x = tc.InferInput("X", list(rows.shape), "FP32")
x.set_data_from_numpy(rows)
try:
    client.infer("iris", [x], headers={k: v for k, v in headers.items() if k != "mlaas-deployment"})
    raise SystemExit("a call naming no deployment was answered")
except InferenceServerException as err:
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "mlaas-deployment" in err.message(), err
print(f"ok {len(labels) + len(streamed)}")
