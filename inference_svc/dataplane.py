"""The runtime's inference pipeline, free of any transport: decode and check a request, load
its data references, take the caller's share of the worker, batch and run it, build its answer,
offer it to the feedback tap, and count it in the statistics, the metrics and the replica's load
(load.py, what the scheduler autoscales on). The gRPC servicer is a
thin adapter over it, and so is the REST one (rest.py).

Two entry points, one pipeline:
- `infer` awaits one request's answer (unary calls);
- `start` starts one and calls back with its answer (a stream's requests get no task of their
  own: measured faster, see bench/stream_bound.py).

Errors: a caller's mistake (an MlaasError, or ONNX Runtime rejecting the values) is answered
with its reason, INVALID_ARGUMENT for the latter; anything else is a bug here: logged with its
traceback and answered INTERNAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import zlib
from collections.abc import Callable, Sequence

import numpy as np
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from inference_svc import data_refs
from inference_svc.access import CALLER_TENANT, feedback_id
from inference_svc.codec import check_shape, decode_array, requested_outputs
from inference_svc.feedback import FeedbackTap
from inference_svc.limits import TenantLimits
from inference_svc.load import WorkerLoad
from inference_svc.metrics import RuntimeMetrics
from inference_svc.repository import CANARY, LoadedModel, ModelRepository
from inference_svc.settings import RuntimeSettings
from inference_svc.signature import TensorInfo
from inference_svc.wire import Answer
from mlaas.errors import FailedPrecondition, Internal, InvalidArgument, MlaasError, NotFound
from mlaas.services.label_store import MAX_LABEL_CHARS

log = logging.getLogger(__name__)

# What ONNX Runtime raises when the values of a request do not suit the model.
_REJECTED_BY_ONNXRUNTIME = (
    ort_errors.InvalidArgument, ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.RuntimeException,
)  # fmt: skip
Outcome = Answer | MlaasError


def in_canary(request_id: str, share: float) -> bool:
    """Whether a request goes to a canary taking `share` of them: by its id, so that a request
    sent again goes the same way; by chance without one."""
    draw = zlib.crc32(request_id.encode()) / 2**32 if request_id else random.random()
    return draw < share


def as_caller_error(err: BaseException) -> MlaasError:
    """The error to answer a failed request with (see the module docstring)."""
    if isinstance(err, MlaasError):
        return err
    if isinstance(err, _REJECTED_BY_ONNXRUNTIME):
        return InvalidArgument(f"inference failed: {str(err).strip()[:500]}")
    log.error("inference failed unexpectedly", exc_info=err)
    return Internal(f"inference failed: internal error ({type(err).__name__}); see the runtime's log")


class Prepared:
    """A decoded request, ready for its batcher. During a trial, `shadow` answers it too, after
    `loaded`, for the Monitor; `canary`: `loaded` is the challenger and `shadow` the served model."""

    __slots__ = (
        "canary", "feedback_id", "feeds", "loaded", "outputs", "references", "request", "rows", "shadow", "started",
        "tenant",
    )  # fmt: skip

    def __init__(
        self, request, loaded: LoadedModel, feeds, outputs: list[TensorInfo], references: bool,
        shadow: LoadedModel | None = None, canary: bool = False,
    ):  # fmt: skip
        self.shadow = shadow
        self.canary = canary
        self.request = request
        self.feedback_id = feedback_id(request.id)  # read here, in the caller's own task
        self.tenant = CALLER_TENANT.get()
        self.loaded = loaded
        self.feeds = feeds  # an input given by data_uri is None until resolve_refs loads it
        self.rows = 0
        self.outputs = outputs
        self.references = references
        self.started = time.perf_counter()


class DataPlane:
    def __init__(
        self, settings: RuntimeSettings, repository: ModelRepository, feedback: FeedbackTap, metrics: RuntimeMetrics,
        load: WorkerLoad,
    ):  # fmt: skip
        self._settings = settings
        self._load = load
        self._repo = repository
        self._feedback = feedback
        self._metrics = metrics
        self._limits = TenantLimits(settings.tenant_share)
        self._observers: dict[tuple[str, str, str], object] = {}
        self._shadows: set[asyncio.Task] = set()  # trials' second answers under way

    # -- the two entry points -------------------------------------------------------------------

    async def infer(self, request, kind: str, raw_inputs: Sequence[bytes | memoryview] | None = None) -> Answer:
        """The request's answer; raises the MlaasError to answer it with. `raw_inputs`: the
        inputs' bytes when they came apart from the request (REST's binary data), instead of its
        raw_input_contents."""
        started = time.perf_counter()
        self._load.begin(started)
        answered = False
        try:
            prepared = self.prepare(request, raw_inputs)
            answer = await self._finish(prepared, kind)
            answered = True
            return answer
        except Exception as err:
            failure = as_caller_error(err)
            self._count_failure(request, kind, failure, started)
            raise failure from None
        finally:
            self._load.end(started, answered)

    def start(self, request, kind: str, deliver: Callable[[Outcome], None]) -> None:
        """Starts the request; `deliver` gets its Answer or the MlaasError that ended it, at once
        when it can."""
        started = time.perf_counter()
        self._load.begin(started)
        deliver = self._load.ending(deliver, started)
        try:
            prepared = self.prepare(request)
            if prepared.references:  # loading them takes a task of its own
                task = asyncio.ensure_future(self._finish(prepared, kind))
                task.add_done_callback(lambda t: deliver(self._settle_task(t, request, kind, started)))
                return
            prepared.rows = self._rows(prepared)
            batcher = prepared.loaded.batcher
            self._limits.take(prepared.tenant, prepared.rows)  # given back when its answer is made
            try:
                outcome = batcher.run_now(prepared.feeds, prepared.rows)
                future = batcher.submit(prepared.feeds, prepared.rows) if outcome is None else None
            except BaseException:
                self._limits.give_back(prepared.tenant, prepared.rows)
                raise
        except Exception as err:
            failure = as_caller_error(err)
            self._count_failure(request, kind, failure, started)
            deliver(failure)
            return
        if future is None:
            assert outcome is not None, "run_now answered, so nothing was submitted"
            deliver(self._settle(prepared, kind, outcome))
        elif future.done():  # ran inline: answer now rather than one loop turn later
            deliver(self._settle(prepared, kind, _result(future)))
        else:

            def settle(f: asyncio.Future) -> None:
                if f.cancelled():  # the stream went away: nobody to answer
                    self._limits.give_back(prepared.tenant, prepared.rows)
                    self._load.end(started, answered=False)
                else:
                    deliver(self._settle(prepared, kind, _result(f)))

            future.add_done_callback(settle)

    # -- the pipeline ---------------------------------------------------------------------------

    def prepare(self, request, raw_inputs: Sequence[bytes | memoryview] | None = None) -> Prepared:
        """Decodes and checks a request; raises InvalidArgument/NotFound with the reason."""
        if len(request.id) > MAX_LABEL_CHARS:  # repeated in its feedback, once per row
            raise InvalidArgument(f"the request id has {len(request.id)} characters; at most {MAX_LABEL_CHARS}")
        loaded = self._repo.get(request.model_name, request.model_version)
        shadow, canary = None, False
        # A trial is judged on what the Monitor sees, and takes no request pinned to a version.
        trial = self._repo.trial(loaded.name) if self._feedback.active and not request.model_version else None
        if trial is not None:
            canary = trial.mode == CANARY and in_canary(request.id, trial.canary_share)
            loaded, shadow = (trial.challenger, loaded) if canary else (loaded, trial.challenger)
        signature = loaded.model.signature
        raw = request.raw_input_contents if raw_inputs is None else raw_inputs
        if raw and len(raw) != len(request.inputs):
            raise InvalidArgument(
                f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
                "send all inputs raw or none"
            )
        feeds: dict[str, np.ndarray | None] = {}
        references = False
        for index, tensor in enumerate(request.inputs):
            info = signature.input(tensor.name)
            if info is None:
                names = ", ".join(t.name for t in signature.inputs)
                raise InvalidArgument(f"input {tensor.name!r} does not exist; the model takes: {names}")
            if tensor.name in feeds:
                raise InvalidArgument(f"input {tensor.name!r} appears twice")
            if "data_uri" in tensor.parameters:
                if self._settings.small_requests_only:
                    raise FailedPrecondition(
                        f"input {tensor.name!r} is given by data_uri: a small request for a big input, "
                        "which only the runtime's bulk port serves"
                    )
                feeds[tensor.name] = None  # loaded off the loop by resolve_refs
                references = True
                continue
            raw_bytes = raw[index] if raw else None
            feeds[tensor.name] = decode_array(tensor, raw_bytes, info, self._settings.max_bytes_elements)
        if len(feeds) != len(signature.inputs):
            missing = [t.name for t in signature.inputs if t.name not in feeds]
            raise InvalidArgument(f"missing input(s) {missing}")
        return Prepared(request, loaded, feeds, requested_outputs(request, signature), references, shadow, canary)

    async def _finish(self, prepared: Prepared, kind: str) -> Answer:
        if prepared.references:
            await self._resolve_refs(prepared)
        prepared.rows = self._rows(prepared)
        batcher = prepared.loaded.batcher
        with self._limits.held(prepared.tenant, prepared.rows):
            result = batcher.run_now(prepared.feeds, prepared.rows)
            if result is None:
                result = await batcher.submit(prepared.feeds, prepared.rows)
        if isinstance(result, BaseException):
            raise result
        answer = self._answer(prepared, result)
        self._observe(prepared, kind, "OK")
        return answer

    async def _resolve_refs(self, prepared: Prepared) -> None:
        """Loads the inputs given by data_uri (off the loop) and checks them as decode_array
        checks inline ones."""
        signature = prepared.loaded.model.signature
        for tensor in prepared.request.inputs:
            if prepared.feeds[tensor.name] is not None:
                continue
            uri = tensor.parameters["data_uri"].string_param
            array = await asyncio.to_thread(data_refs.load, uri, self._settings.data_refs)
            info = signature.input(tensor.name)
            assert info is not None, "prepare() refused inputs the model does not take"
            if tensor.datatype and tensor.datatype != info.datatype:
                raise InvalidArgument(f"input {tensor.name!r}: datatype {tensor.datatype}, expected {info.datatype}")
            if tensor.shape and tuple(tensor.shape) != array.shape:
                raise InvalidArgument(f"input {tensor.name!r}: {uri} holds shape {list(array.shape)}, "
                                      f"the request says {list(tensor.shape)}")  # fmt: skip
            if not np.can_cast(array.dtype, info.dtype, casting="same_kind"):
                raise InvalidArgument(
                    f"input {tensor.name!r}: {uri} holds {array.dtype}, the model takes {info.datatype}"
                )
            check_shape(info, array.shape)
            prepared.feeds[tensor.name] = array.astype(info.dtype, copy=False)

    @staticmethod
    def _rows(prepared: Prepared) -> int:
        if not prepared.loaded.policy.batchable:
            return 1
        arrays = iter(prepared.feeds.values())
        rows = next(arrays).shape[0]
        if any(array.shape[0] != rows for array in arrays):
            sizes = {name: array.shape[0] for name, array in prepared.feeds.items()}
            raise InvalidArgument(f"inputs disagree on the batch size: {sizes}")
        return rows

    def _answer(self, prepared: Prepared, result: dict[str, np.ndarray]) -> Answer:
        loaded = prepared.loaded
        answer = Answer()
        head = answer.head
        head.model_name, head.model_version, head.id = loaded.name, loaded.version, prepared.request.id
        for info in prepared.outputs:
            answer.add_output(info.name, result[info.name], info.datatype)
        if prepared.shadow is None:
            self._feedback.offer(prepared.feedback_id, loaded.name, loaded.version, prepared.feeds, result)
        else:
            task = asyncio.ensure_future(self._answer_in_shadow(prepared, prepared.shadow, result))
            self._shadows.add(task)
            task.add_done_callback(self._shadows.discard)
        return answer

    async def _answer_in_shadow(self, prepared: Prepared, shadow: LoadedModel, served: dict[str, np.ndarray]) -> None:
        """A trial's second answer to a request, after the first went out: both in one feedback
        record, the served model's as the record's own and the challenger's as its shadow. Skipped
        when the second model is behind (a trial never holds up what serves); a canary row whose
        served model's answer is missing is not reported at all (it would pass the challenger's
        answer for the served model's)."""
        other = None
        if shadow.batcher.queued_rows < shadow.policy.max_queue_rows // 2:
            try:
                other = shadow.batcher.run_now(prepared.feeds, prepared.rows)
                if other is None:
                    other = await shadow.batcher.submit(prepared.feeds, prepared.rows)
            except Exception as err:  # the served answer went out; the trial misses this row
                log.debug("a trial's second answer failed: %s", err)
                other = None
        champion, challenger = (other, served) if prepared.canary else (served, other)
        champion_model, challenger_model = (shadow, prepared.loaded) if prepared.canary else (prepared.loaded, shadow)
        if champion is None or isinstance(champion, BaseException):
            return
        if isinstance(challenger, BaseException):
            challenger = None
        self._feedback.offer(
            prepared.feedback_id, champion_model.name, champion_model.version, prepared.feeds, champion,
            challenger_model.version if challenger is not None else "", challenger,
        )  # fmt: skip

    def _settle(self, prepared: Prepared, kind: str, result: dict[str, np.ndarray] | BaseException) -> Outcome:
        """A streamed request's outcome once its batch ran."""
        self._limits.give_back(prepared.tenant, prepared.rows)
        try:
            if isinstance(result, BaseException):
                raise result
            answer = self._answer(prepared, result)
        except Exception as err:
            failure = as_caller_error(err)
            self._count_failure(prepared.request, kind, failure, prepared.started)
            return failure
        self._observe(prepared, kind, "OK")
        return answer

    def _settle_task(self, task: asyncio.Task, request, kind: str, started: float) -> Outcome:
        if task.cancelled():
            return Internal("inference was cancelled")
        error = task.exception()
        if error is None:
            return task.result()
        failure = as_caller_error(error)
        self._count_failure(request, kind, failure, started)
        return failure

    # -- statistics and metrics -----------------------------------------------------------------

    def _latency(self, model: str, kind: str, status: str):
        key = (model, kind, status)
        latency = self._observers.get(key)
        if latency is None:
            latency = self._observers[key] = self._metrics.buffered(self._metrics.latency.labels(model, kind, status))
        return latency

    def _observe(self, prepared: Prepared, kind: str, status: str) -> None:
        elapsed = time.perf_counter() - prepared.started
        self._latency(prepared.loaded.name, kind, status).observe(elapsed)
        prepared.loaded.stats.success.add(int(elapsed * 1e9))

    def _count_failure(self, request, kind: str, err: MlaasError, started: float) -> None:
        elapsed = time.perf_counter() - started
        with contextlib.suppress(NotFound):
            self._repo.get(request.model_name).stats.fail.add(int(elapsed * 1e9))
        self._latency(request.model_name or "-", kind, err.code.name).observe(elapsed)


def _result(future: asyncio.Future) -> dict[str, np.ndarray] | BaseException:
    error = future.exception()
    return error if error is not None else future.result()
