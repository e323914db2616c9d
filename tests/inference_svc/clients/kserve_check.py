"""Drives a runtime with KServe's unmodified InferenceGRPCClient (its own process: KServe's
stubs define the same protobuf symbols as the mesh's).

    python kserve_check.py ADDRESS MODEL.onnx
"""

import asyncio
import sys

import numpy as np
import onnxruntime as ort
from kserve import InferenceGRPCClient, InferInput, InferRequest


async def main(address: str, model_path: str) -> None:
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)
    expected = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]).run(None, {"X": rows})
    client = InferenceGRPCClient(url=address, use_ssl=False)
    assert await client.is_server_live()
    assert await client.is_server_ready()
    assert await client.is_model_ready("iris")
    x = InferInput(name="X", shape=list(rows.shape), datatype="FP32")
    x.set_data_from_numpy(rows, binary_data=True)
    response = await client.infer(InferRequest(model_name="iris", infer_inputs=[x], request_id="k-1"))
    outputs = {o.name: o.as_numpy() for o in response.outputs}
    assert response.id == "k-1", response.id
    assert np.array_equal(outputs["label"], expected[0]), outputs
    assert np.allclose(outputs["probabilities"], expected[1])
    await client.close()
    print("ok")


asyncio.run(main(sys.argv[1], sys.argv[2]))
