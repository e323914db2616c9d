"""Drives a runtime's REST endpoint with KServe's unmodified InferenceRESTClient (v2 protocol;
its own process, as the gRPC check).

    python kserve_rest_check.py http://HOST:PORT MODEL.onnx
"""

import asyncio
import sys

import numpy as np
import onnxruntime as ort
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main(base_url: str, model_path: str) -> None:
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)
    expected = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]).run(None, {"X": rows})
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    assert await client.is_server_live(base_url)
    assert await client.is_server_ready(base_url)
    assert await client.is_model_ready(base_url, "iris")
    for binary in (False, True):
        x = InferInput(name="X", shape=list(rows.shape), datatype="FP32")
        x.set_data_from_numpy(rows, binary_data=binary)
        request = InferRequest(model_name="iris", infer_inputs=[x], request_id="k-1")
        response = await client.infer(base_url, request, model_name="iris")
        outputs = {o.name: o.as_numpy() for o in response.outputs}
        assert response.id == "k-1", response.id
        assert np.array_equal(outputs["label"], expected[0]), outputs
        assert np.array_equal(outputs["probabilities"], expected[1]), outputs
    await client.close()
    print("ok")


asyncio.run(main(sys.argv[1], sys.argv[2]))
