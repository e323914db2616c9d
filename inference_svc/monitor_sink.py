"""The feedback sink that sends inference records to the Monitor (IngestFeedback), one
client-streaming call per drained batch. Each record carries one request id per row: the
request's own id for a single row, `ID/0`, `ID/1`, ... for a batch of rows, which is what an
application quotes when it reports labels."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from inference_svc.feedback import FeedbackRecord
from mlaas.client import bearer_metadata
from mlaas.inference_client import label_ids
from mlaas.tensors import to_raw
from mlaas.tls import aio_channel
from mlaas.v1 import monitor_pb2, monitor_pb2_grpc

M = monitor_pb2


def row_ids(request_id: str, rows: int) -> list[str]:
    return label_ids(request_id, rows) if request_id else [""] * rows


def _tensor(name: str, array) -> monitor_pb2.RawTensor:
    datatype, raw = to_raw(array)
    return M.RawTensor(name=name, datatype=datatype, shape=array.shape, data=raw)


def to_message(deployment_id: str, records: list[FeedbackRecord], dropped: int) -> monitor_pb2.IngestFeedbackRequest:
    message = M.IngestFeedbackRequest(deployment_id=deployment_id, dropped=dropped)
    for record in records:
        rows = next(iter(record.inputs.values())).shape[0] if record.inputs else 0
        stamp = Timestamp()
        stamp.FromNanoseconds(record.time_ns)
        message.model_name = record.model
        message.records.append(
            M.InferenceRecord(
                request_ids=row_ids(record.request_id, rows),
                model_version=int(record.version) if str(record.version).isdigit() else 0,
                inputs=[_tensor(n, a) for n, a in record.inputs.items()],
                outputs=[_tensor(n, a) for n, a in record.outputs.items()],
                time=stamp,
            )
        )
    return message


class MonitorConnection:
    """IngestFeedback calls to the Monitor, over a channel opened on the worker's own event loop
    at first use (shared by the record and the summary sinks)."""

    def __init__(self, address: str, token: str | None = None):
        self._address = address
        self._metadata = bearer_metadata(token)
        self._stub: monitor_pb2_grpc.MonitorServiceStub | None = None

    async def ingest(self, message: monitor_pb2.IngestFeedbackRequest) -> None:
        if self._stub is None:
            # TLS as the environment says (MLAAS_TLS_CA...), which the scheduler passes on.
            self._stub = monitor_pb2_grpc.MonitorServiceStub(aio_channel(self._address))
        await self._stub.IngestFeedback(iter([message]), metadata=self._metadata, timeout=30)


class MonitorSink:
    def __init__(self, monitor: MonitorConnection, deployment_id: str):
        self._monitor = monitor
        self._deployment_id = deployment_id

    async def send(self, records: list[FeedbackRecord], dropped: int) -> None:
        await self._monitor.ingest(to_message(self._deployment_id, records, dropped))
