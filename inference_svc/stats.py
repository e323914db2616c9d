"""Per-model statistics in the shape of Triton's ModelStatistics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mlaas.oip import open_inference_v2_pb2 as oip


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def proto(self) -> oip.StatisticDuration:
        return oip.StatisticDuration(count=self.count, ns=self.ns)


@dataclass
class BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class ModelStats:
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    by_batch_size: dict[int, BatchStats] = field(default_factory=dict)
    # Calls not yet added up: (rows, requests, input ns, infer ns, output ns).
    _calls: list[tuple[int, int, int, int, int]] = field(default_factory=list, repr=False)
    _last_call_s: float = 0.0

    def record_batch(self, rows: int, requests: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        """Notes one ONNX Runtime call. Adding it up waits until the statistics are read (or
        many calls wait): on the request path an append costs a tenth of the additions."""
        self._calls.append((rows, requests, input_ns, infer_ns, output_ns))
        self._last_call_s = time.time()
        if len(self._calls) >= 4096:
            self._add_up()

    def _add_up(self) -> None:
        calls, self._calls = self._calls, []
        for rows, requests, input_ns, infer_ns, output_ns in calls:
            self.execution_count += 1
            self.inference_count += rows
            # Triton counts compute per request; the batch's time is shared by its requests.
            self.compute_input.add(input_ns, requests)
            self.compute_infer.add(infer_ns, requests)
            self.compute_output.add(output_ns, requests)
            batch = self.by_batch_size.setdefault(rows, BatchStats())
            batch.compute_input.add(input_ns)
            batch.compute_infer.add(infer_ns)
            batch.compute_output.add(output_ns)
        if calls:
            self.last_inference_ms = int(self._last_call_s * 1000)

    def proto(self, name: str, version: str) -> oip.ModelStatistics:
        self._add_up()
        return oip.ModelStatistics(
            name=name,
            version=version,
            last_inference=self.last_inference_ms,
            inference_count=self.inference_count,
            execution_count=self.execution_count,
            inference_stats=oip.InferStatistics(
                success=self.success.proto(),
                fail=self.fail.proto(),
                queue=self.queue.proto(),
                compute_input=self.compute_input.proto(),
                compute_infer=self.compute_infer.proto(),
                compute_output=self.compute_output.proto(),
            ),
            batch_stats=[
                oip.InferBatchStatistics(
                    batch_size=size,
                    compute_input=b.compute_input.proto(),
                    compute_infer=b.compute_infer.proto(),
                    compute_output=b.compute_output.proto(),
                )
                for size, b in sorted(self.by_batch_size.items())
            ],
        )
