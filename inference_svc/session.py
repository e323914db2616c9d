"""One ONNX Runtime session, tuned for serving next to a Python gRPC loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from inference_svc.signature import Signature, from_session


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    # Spinning threads would take the core the gRPC event loop needs between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class OnnxModel:
    def __init__(self, path: Path, intra_op_threads: int = 1):
        self.session = ort.InferenceSession(
            str(path), session_options(intra_op_threads), providers=["CPUExecutionProvider"]
        )
        self.signature: Signature = from_session(self.session)
        self._output_names = [o.name for o in self.signature.outputs if o.datatype]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._output_names, self.session.run(self._output_names, feeds), strict=True))
