"""`python -m inference_svc.warm`: the local backend's warm runtime, a fork server
(mlaas/services/fork_server.py) that has imported the runtime's data plane (gRPC, ONNX Runtime,
the servers and clients) and run one model through ONNX Runtime, and starts each replica as a
forked child of itself. The replica's workers are forked from it in turn (server.run), so a
replica serves in a fraction of a second instead of after three interpreters' imports.

The child is `python -m inference_svc` with the request's arguments, under the rules of a
replica started cold (its own session, log and environment, which holds its credential).
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

import inference_svc.app  # noqa: F401  (the data plane, imported once here for every replica)
from inference_svc.__main__ import main as runtime_main
from inference_svc.session import OnnxModel
from mlaas.services import fork_server


def warm_up() -> None:
    """ONNX Runtime's session machinery, set up once: a one-node model loaded and run."""
    import tempfile
    from pathlib import Path

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "warm-up",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "warm-up.onnx"
        onnx.save(model, path)
        OnnxModel(path).run({"x": np.zeros((1, 2), np.float32)})


def run_replica(argv: list[str]) -> int:
    return runtime_main(argv, preloaded=True)


def main() -> int:
    return fork_server.run(warm_up, run_replica, "warm runtime", "inference_svc")


if __name__ == "__main__":
    sys.exit(main())
