"""One unmodified tritonclient.grpc call through the scheduler's activator per line read from
stdin, timed from the call to its answer; prints the seconds of each (its own process:
tritonclient and the mesh's inference stubs cannot share one).

    python triton_first_answer.py ACTIVATOR DEPLOYMENT_ID MODEL FEATURES
"""

import sys
import time

import numpy as np
import tritonclient.grpc as tc

address, deployment_id, model, features = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = np.random.default_rng(0).random((8, features), dtype=np.float32)
print("ready", flush=True)
for _ in sys.stdin:
    began = time.monotonic()
    client = tc.InferenceServerClient(address)
    x = tc.InferInput("X", list(rows.shape), "FP32")
    x.set_data_from_numpy(rows)
    client.infer(model, [x], headers={"mlaas-deployment": deployment_id}, client_timeout=120)
    print(f"{time.monotonic() - began:.4f}", flush=True)
    client.close()
