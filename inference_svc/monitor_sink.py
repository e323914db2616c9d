"""The feedback sink that sends inference records to the Monitor (IngestFeedback), one
client-streaming call per drained batch. Each record carries one request id per row: the
request's own id for a single row, `ID/0`, `ID/1`, ... for a batch of rows, which is what an
application quotes when it reports labels."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from inference_svc.credentials import RuntimeCredentials
from inference_svc.feedback import FeedbackRecord, version_number
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
                model_version=version_number(record.version),
                inputs=[_tensor(n, a) for n, a in record.inputs.items()],
                outputs=[_tensor(n, a) for n, a in record.outputs.items()],
                time=stamp,
                shadow_model_version=version_number(record.shadow_version),
                shadow_outputs=[_tensor(n, a) for n, a in (record.shadow_outputs or {}).items()],
            )
        )
    return message


def version_of(message: monitor_pb2.IngestFeedbackRequest) -> int:
    """The model version a message of one version reports on (0 if it names none)."""
    for part in (message.records, message.summaries, message.label_summaries):
        if part:
            return part[0].model_version
    return message.edges_for_version


class MonitorConnection:
    """IngestFeedback calls to the Monitor, over a channel opened on the worker's own event loop
    at first use (shared by the record and the summary sinks), each with the credential of the
    version it reports on (credentials.py)."""

    def __init__(self, address: str, credentials: RuntimeCredentials):
        self._address = address
        self._credentials = credentials
        self._stub: monitor_pb2_grpc.MonitorServiceStub | None = None

    async def ingest(self, message: monitor_pb2.IngestFeedbackRequest) -> monitor_pb2.IngestFeedbackResponse:
        """Sends a message that reports on one model version."""
        if self._stub is None:
            # TLS as the environment says (MLAAS_TLS_CA...), which the scheduler passes on.
            self._stub = monitor_pb2_grpc.MonitorServiceStub(aio_channel(self._address))
        metadata = bearer_metadata(self._credentials.for_version(version_of(message)))
        return await self._stub.IngestFeedback(iter([message]), metadata=metadata, timeout=30)


class MonitorSink:
    def __init__(self, monitor: MonitorConnection, deployment_id: str):
        self._monitor = monitor
        self._deployment_id = deployment_id

    async def send(self, records: list[FeedbackRecord], dropped: int) -> None:
        """One message per model version (a batch spans a hot swap now and then)."""
        versions = list(dict.fromkeys(r.version for r in records)) or [""]
        for i, version in enumerate(versions):
            batch = [r for r in records if r.version == version]
            await self._monitor.ingest(to_message(self._deployment_id, batch, dropped if i == 0 else 0))
