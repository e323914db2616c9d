"""One ONNX Runtime session, tuned for serving next to a Python gRPC loop."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inference_svc.signature import Signature, TensorInfo, from_session

log = logging.getLogger(__name__)


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
    """The model's session, and for long calls (batcher.py) a second one with `wide_threads`
    threads, made at the first such call (a model that never gets one pays nothing for it)."""

    def __init__(self, path: Path, intra_op_threads: int = 1, wide_threads: int = 1):
        self._path = path
        self.session = ort.InferenceSession(
            str(path), session_options(intra_op_threads), providers=["CPUExecutionProvider"]
        )
        self.signature: Signature = from_session(self.session)
        self._output_names = [o.name for o in self.signature.outputs if o.datatype]
        self._wide_threads = wide_threads if wide_threads > intra_op_threads else 0
        self._wide: ort.InferenceSession | None = None
        self._wide_lock = threading.Lock()

    @property
    def has_wide(self) -> bool:
        return bool(self._wide_threads)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._output_names, self.session.run(self._output_names, feeds), strict=True))

    def run_wide(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._wide_lock:
            if self._wide is None:
                options = session_options(self._wide_threads)
                self._wide = ort.InferenceSession(str(self._path), options, providers=["CPUExecutionProvider"])
        return dict(zip(self._output_names, self._wide.run(self._output_names, feeds), strict=True))

    def warm_up(self) -> int | None:
        """Runs the model twice on zeros shaped as one row, as Triton's model warmup does, so that
        the first request does not pay ONNX Runtime's first-run allocations (about half a
        millisecond for a logistic regression here). Returns the second call's time in ns, or
        None when the model refuses zeros (it is served all the same)."""
        feeds = {info.name: _zeros(info) for info in self.signature.inputs}
        try:
            self.run(feeds)
            started = time.perf_counter_ns()
            self.run(feeds)
            return time.perf_counter_ns() - started
        except Exception as err:
            log.info("warm-up skipped: the model refused zero inputs: %s", str(err)[:200])
            return None


def _zeros(info: TensorInfo) -> np.ndarray:
    shape = tuple(1 if dim < 0 else dim for dim in info.shape)
    if info.datatype == "BYTES":
        return np.full(shape, "", dtype=np.object_)
    return np.zeros(shape, dtype=info.dtype)
