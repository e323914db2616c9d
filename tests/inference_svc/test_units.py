"""The runtime's pure parts, in process: tensor codec, batcher, call-cost model, feedback tap."""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter

from inference_svc.batcher import CallCost, DynamicBatcher
from inference_svc.codec import check_shape
from inference_svc.credentials import RuntimeCredentials
from inference_svc.feedback import FeedbackTap, record_bytes, tensor_bytes
from inference_svc.limits import TenantLimits, closed_when_idle
from inference_svc.settings import BatchPolicy, TenantShare
from inference_svc.signature import TensorInfo
from inference_svc.stats import ModelStats
from mlaas import errors
from mlaas.tensors import decode_bytes, encode_bytes, from_raw, to_raw


def test_bytes_round_trip_and_truncation():
    data = np.array([b"", b"abc", "ünï".encode()], dtype=np.object_)
    assert list(decode_bytes(encode_bytes(data))) == list(data)
    with pytest.raises(ValueError, match="runs past the end"):
        decode_bytes(encode_bytes(data)[:-1])
    datatype, raw = to_raw(np.arange(6, dtype=np.int16).reshape(2, 3))
    assert datatype == "INT16" and np.array_equal(from_raw(raw, "INT16", (2, 3)), np.arange(6).reshape(2, 3))


def test_shape_checks():
    info = TensorInfo("X", "FP32", (-1, 4), "tensor(float)")
    check_shape(info, (7, 4))
    for bad in ((4,), (2, 3), (2, 4, 1), (-1, 4)):
        with pytest.raises(errors.InvalidArgument, match="input 'X'"):
            check_shape(info, bad)


def test_call_cost_separates_fixed_and_per_row():
    cost = CallCost(weight=1.0)
    assert cost.predict(10) is None
    cost.observe(1, 10_000)
    cost.observe(11, 30_000)
    assert cost.predict(1) == 10_000
    assert cost.predict(21) == pytest.approx(50_000)


def test_call_cost_does_not_guess_the_cost_of_many_rows_from_single_rows():
    cost = CallCost()
    cost.observe(1, 10_000)
    assert cost.predict(1) == 10_000
    assert cost.predict(1_500_000) is None  # unknown: such a call goes to the thread, not the loop


def test_call_cost_ignores_a_preempted_call_but_follows_a_lasting_change():
    cost = CallCost()
    cost.observe(1, 10_000)
    cost.observe(1, 900_000)  # the process lost the CPU during this one
    assert cost.predict(1) == pytest.approx(10_500)
    for _ in range(40):  # the model really got slower
        cost.observe(1, 40_000)
    assert cost.predict(1) == 40_000
    cost.observe(1, 12_000)  # and faster again: at once
    assert cost.predict(1) == 12_000


def test_call_cost_is_bounded_by_batched_calls_after_a_slow_first_call():
    cost = CallCost()
    cost.observe(1, 9_000_000)  # a cold first call
    for _ in range(3):  # then only batches, as under steady load
        cost.observe(8, 80_000)
    assert cost.predict(1) <= 80_000


def _run(coro):
    return asyncio.run(coro)


def test_batcher_splits_results_and_isolates_failures():
    calls = []

    def runner(feeds):
        x = feeds["x"]
        calls.append(len(x))
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": x * 2}

    async def main():
        stats = ModelStats()
        batcher = DynamicBatcher(runner, BatchPolicy(max_queue_delay_us=50_000, inline_compute_us=0), stats, "t")
        inputs = [np.full((n, 1), i, dtype=np.float32) for i, n in enumerate([1, 2, 3, 1])]
        inputs.append(np.full((1, 1), -1, dtype=np.float32))
        futures = [batcher.submit({"x": x}, len(x)) for x in inputs]
        results = await asyncio.gather(*futures, return_exceptions=True)
        await batcher.close()
        return stats, results, inputs

    stats, results, inputs = _run(main())
    for x, result in zip(inputs[:4], results[:4], strict=True):
        assert np.array_equal(result["y"], x * 2)
    assert isinstance(results[4], ValueError)
    assert calls[0] == 8  # one shared call, then each request alone after the failure
    counted = stats.proto("t", "1")
    assert counted.execution_count == 4 and counted.inference_count == 7


def test_batcher_runs_tiny_calls_inline_once_measured():
    import threading

    threads = []

    def runner(feeds):
        threads.append(threading.current_thread().name)
        return {"y": feeds["x"]}

    async def main():
        batcher = DynamicBatcher(runner, BatchPolicy(inline_compute_us=10_000), ModelStats(), "t")
        for _ in range(3):
            await batcher.submit({"x": np.zeros((1, 1))}, 1)
        await batcher.close()

    _run(main())
    assert threads[0].startswith("onnx-t")  # unmeasured: off the loop
    assert threads[1:] == ["MainThread", "MainThread"]  # measured as tiny: inline


def test_run_now_answers_measured_short_calls_at_once_and_defers_the_rest():
    def runner(feeds):
        if (feeds["x"] < 0).any():
            raise ValueError("negative input")
        time.sleep(0.01 * len(feeds["x"]))  # 10 ms a row: a busy machine's delays stay well under 100 ms
        return {"y": feeds["x"] * 2}

    async def main():
        stats = ModelStats()
        batcher = DynamicBatcher(runner, BatchPolicy(inline_compute_us=100_000), stats, "t")
        one = {"x": np.ones((1, 1))}
        assert batcher.run_now(one, 1) is None  # never measured: submit it
        await batcher.submit(one, 1)
        assert np.array_equal(batcher.run_now(one, 1)["y"], [[2.0]])
        assert isinstance(batcher.run_now({"x": -one["x"]}, 1), ValueError)
        counted = stats.proto("t", "1")
        assert counted.execution_count == 2 and counted.inference_stats.queue.count == 2  # not the failed one
        await batcher.submit({"x": np.ones((40, 1))}, 40)  # measures the cost per row
        pending = batcher.submit({"x": np.ones((40, 1))}, 40)  # predicted long: runs on the thread
        assert batcher.run_now(one, 1) is None  # something is running: keep the order, join the queue
        await pending
        await batcher.close()

        waiting = DynamicBatcher(runner, BatchPolicy(max_queue_delay_us=1000, inline_compute_us=100_000), stats, "w")
        await waiting.submit(one, 1)
        assert waiting.run_now(one, 1) is None  # the model waits to fill batches
        await waiting.close()

    _run(main())


def test_batcher_bounds_its_queue():
    async def main():
        batcher = DynamicBatcher(
            lambda f: {"y": f["x"]}, BatchPolicy(max_queue_delay_us=100_000, max_queue_rows=4), ModelStats(), "t"
        )
        first = batcher.submit({"x": np.zeros((3, 1))}, 3)
        with pytest.raises(errors.ResourceExhausted, match="inference queue is full"):
            batcher.submit({"x": np.zeros((2, 1))}, 2)
        await first
        await batcher.close()

    _run(main())


def test_feedback_tap_drops_when_full_and_never_waits():
    received = []

    class Sink:
        async def send(self, records, dropped):
            received.append((len(records), dropped))

    registry = CollectorRegistry()
    dropped_metric = Counter("dropped", "records dropped", registry=registry)

    async def main():
        tap = FeedbackTap(capacity=3, sink=Sink(), batch_size=2, dropped_metric=dropped_metric)
        for i in range(5):
            tap.offer(str(i), "m", "1", {"x": np.zeros(1)}, {"y": np.zeros(1)})
        assert tap.dropped == 2 and tap.pending == 3
        await tap.stop()
        return tap

    tap = _run(main())
    assert received == [(2, 2), (1, 0)]
    assert tap.sent == 3
    assert registry.get_sample_value("dropped_total") == 2


def test_feedback_tap_keeps_what_the_sink_refused_and_sends_it_when_it_is_back():
    """A Monitor restart used to drop every record offered meanwhile, and the labels for those
    requests then never found their predictions."""
    received: list[str] = []
    sink_up = [False]

    class Sink:
        async def send(self, records, dropped):
            if not sink_up[0]:
                raise ConnectionError("monitor restarting")
            received.extend(r.request_id for r in records)

    async def main():
        tap = FeedbackTap(capacity=4, sink=Sink(), batch_size=2)
        for i in range(3):
            tap.offer(str(i), "m", "1", {"x": np.zeros(1)}, {"y": np.zeros(1)})
        await tap._drain_once()
        assert tap.pending == 3 and tap.dropped == 0  # kept, in order
        for i in range(3, 5):
            tap.offer(str(i), "m", "1", {"x": np.zeros(1)}, {"y": np.zeros(1)})  # the 5th does not fit
        sink_up[0] = True
        await tap._drain_once()
        return tap

    tap = _run(main())
    assert received == ["0", "1", "2", "3"] and tap.dropped == 1 and tap.pending == 0


def test_feedback_tap_holds_a_sample_of_a_big_request_and_a_bounded_number_of_bytes():
    """A 30 MB request's 72 MB record was sent (and refused by the Monitor's message limit) again
    every 0.2 s forever, and 120 of them held gigabytes on the bulk worker."""
    sent: list[list] = []

    class Sink:
        async def send(self, records, dropped):
            sent.append([r.size for r in records])

    async def main():
        tap = FeedbackTap(capacity=100, sink=Sink(), budget_bytes=1_000, batch_bytes=400)
        big = np.arange(1_000, dtype=np.float32).reshape(250, 4)  # 4,000 bytes and 250 labels' worth
        tap.offer("big", "m", "1", {"x": big}, {"y": np.zeros(250, dtype=np.float32)})
        kept = tap._buffer[0]
        assert kept.size <= 400 and np.array_equal(kept.inputs["x"], big[: len(kept.inputs["x"])])
        assert kept.inputs["x"].base is None and tap.dropped == 1  # a copy: the big array is not held
        for i in range(10):  # 8 + 4 bytes each
            tap.offer(str(i), "m", "1", {"x": np.zeros(2, dtype=np.float32)}, {"y": np.zeros(1, dtype=np.float32)})
        assert tap.pending == 11
        while tap.pending:
            tap.offer("more", "m", "1", {"x": np.zeros(100, dtype=np.float32)}, {"y": np.zeros(1, dtype=np.float32)})
            await tap._drain_once()
        return tap

    tap = _run(main())
    assert all(sum(batch) <= 400 for batch in sent)
    assert tap._bytes == 0 and tap.dropped > 1  # the budget refused what did not fit


def test_a_records_size_counts_its_strings_and_its_request_id_once_per_row():
    """BYTES tensors' numpy arrays hold pointers (8 bytes an element): 300 requests of 3.9 MB
    strings were counted as 16 KB each and held 4.6 GB."""
    strings = np.array([b"x" * 1000] * 10, dtype=object)
    assert tensor_bytes({"s": strings}) >= 10_000
    rows = {"x": np.zeros((100, 2), dtype=np.float32)}
    assert record_bytes("r" * 200, rows, {}) >= 800 + 100 * 200


def test_feedback_tap_with_nowhere_to_send_keeps_nothing():
    """A runtime without a Monitor once copied a sample of every big request's rows for nothing
    and counted each as dropped."""
    tap = FeedbackTap(capacity=10, sink=None, batch_bytes=100)
    tap.offer("big", "m", "1", {"x": np.zeros((1000, 4), dtype=np.float32)}, {"y": np.zeros(1000)})
    tap.offer("small", "m", "1", {"x": np.zeros(1)}, {"y": np.zeros(1)})
    assert tap.pending == 0 and tap.dropped == 0


def test_feedback_tap_drops_a_batch_the_sink_refuses_for_good():
    attempts: list[int] = []

    class Sink:
        async def send(self, records, dropped):
            attempts.append(len(records))
            raise errors.ResourceExhausted("message larger than max")

    async def main():
        tap = FeedbackTap(capacity=10, sink=Sink())
        tap.offer("1", "m", "1", {"x": np.zeros(1)}, {"y": np.zeros(1)})
        await tap._drain_once()
        await tap._drain_once()
        return tap

    tap = _run(main())
    assert attempts == [1] and tap.pending == 0 and tap.dropped == 1  # once, not forever


def test_a_short_call_does_not_wait_for_a_long_one_on_the_session_thread():
    """A 1-row request arriving while a 1.5M-row call runs used to wait the whole call (p99 of
    131 ms beside 24 MiB requests): it now runs on the loop beside it."""

    def runner(feeds):
        time.sleep(0.0005 * len(feeds["x"]))
        return {"y": feeds["x"] * 2}

    async def main():
        batcher = DynamicBatcher(runner, BatchPolicy(inline_compute_us=10_000), ModelStats(), "t")
        one = {"x": np.ones((1, 1))}
        batcher.expect(1, 500_000)  # what the runner costs, as if measured (a loaded machine
        batcher.expect(5, 2_500_000)  # measures anything): 0.5 ms a row
        long_call = batcher.submit({"x": np.ones((1000, 1))}, 1000)  # predicted 500 ms: on the thread
        await asyncio.sleep(0.02)
        beside = batcher.run_now(one, 1)
        assert not long_call.done()
        assert np.array_equal(beside["y"], [[2.0]])
        await long_call
        await batcher.close()

    _run(main())


def test_a_tenants_share_bounds_requests_and_rows_but_never_refuses_a_first_request():
    limits = TenantLimits(TenantShare(max_requests=2, max_rows=100))
    limits.take("alpha", 5_000)  # alone, however big: only the message size bounds it
    with pytest.raises(errors.ResourceExhausted, match="limit per tenant is 100"):
        limits.take("alpha", 1)
    limits.give_back("alpha", 5_000)
    limits.take("alpha", 60)
    limits.take("alpha", 40)
    with pytest.raises(errors.ResourceExhausted, match="2 of your requests are in flight"):
        limits.take("alpha", 0)
    limits.take("beta", 100)  # others are not affected
    for _ in range(1_000):
        limits.take("", 1_000)  # without auth nobody is counted
    limits.give_back("alpha", 60)
    limits.give_back("alpha", 40)
    assert limits.in_flight("alpha") == (0, 0)


def test_requests_that_cannot_share_a_call_are_run_apart_and_the_batcher_goes_on():
    """Requests of a model with a dynamic non-batch dimension once wedged the batcher for good
    (np.concatenate failed outside any handler): now they simply do not share a call."""
    calls = []

    def runner(feeds):
        calls.append(feeds["x"].shape)
        return {"y": feeds["x"].sum(axis=1)}

    async def main():
        batcher = DynamicBatcher(runner, BatchPolicy(max_queue_delay_us=20_000), ModelStats(), "t")
        inputs = [np.ones((2, 3)), np.ones((2, 4)), np.ones((1, 4)), np.ones((2, 3))]
        results = await asyncio.gather(*(batcher.submit({"x": x}, len(x)) for x in inputs))
        again = await batcher.submit({"x": np.ones((1, 5))}, 1)
        await batcher.close()
        return results, again

    results, again = _run(main())
    assert [list(r["y"]) for r in results] == [[3, 3], [4, 4], [4], [3, 3]]
    assert list(again["y"]) == [5]
    assert calls[:3] == [(2, 3), (3, 4), (2, 3)]  # neighbours that stack still share


def test_a_request_whose_caller_went_away_frees_its_queue_room_and_is_never_run():
    runs = []

    def runner(feeds):
        runs.append(len(feeds["x"]))
        time.sleep(0.05)
        return {"y": feeds["x"]}

    async def main():
        batcher = DynamicBatcher(runner, BatchPolicy(max_queue_rows=100, inline_compute_us=0), ModelStats(), "t")
        first = batcher.submit({"x": np.ones((1, 1))}, 1)  # runs: the others queue behind it
        gone = batcher.submit({"x": np.ones((60, 1))}, 60)
        gone.cancel()
        await asyncio.sleep(0)  # its done callbacks run
        assert batcher.queued_rows == 0
        kept = batcher.submit({"x": np.ones((90, 1))}, 90)  # room again
        await asyncio.gather(first, kept)
        await batcher.close()

    _run(main())
    assert runs == [1, 90]


def test_a_long_call_takes_every_core_only_while_no_other_worker_runs_one():
    """A call predicted over WIDE_CALL_NS runs on the wide runner; while another worker process
    of the runtime runs a long call (held here through the shared counter), on the narrow one.
    Short calls never go wide."""
    from inference_svc.cores import LongCalls

    used = []

    def work(feeds):
        time.sleep(0.003 * len(feeds["x"]) / 10)
        return {"y": feeds["x"]}

    def narrow(feeds):
        used.append("narrow")
        return work(feeds)

    def wide(feeds):
        used.append("wide")
        return work(feeds)

    long_calls = LongCalls()

    async def main():
        batcher = DynamicBatcher(narrow, BatchPolicy(inline_compute_us=0), ModelStats(), "t", wide_runner=wide,
                                 long_calls=long_calls)  # fmt: skip
        for _ in range(2):  # unmeasured (a cost per row needs two calls of several rows): narrow
            await batcher.submit({"x": np.ones((10, 1))}, 10)
        await batcher.submit({"x": np.ones((10, 1))}, 10)  # predicted 3 ms: wide, being alone
        with long_calls.running():  # another worker's long call
            await batcher.submit({"x": np.ones((10, 1))}, 10)
        await batcher.submit({"x": np.ones((1, 1))}, 1)  # predicted 0.3 ms: narrow
        await batcher.close()

    _run(main())
    assert used == ["narrow", "narrow", "wide", "narrow", "narrow"]


def test_a_trials_credential_speaks_for_both_versions_only_while_it_runs():
    """The runtime's credentials (credentials.py): version 1's own; a trial's, naming 1 and 3,
    for both while it runs; afterwards version 1's own again, and none that names version 3."""
    credentials = RuntimeCredentials("own-1", 1)
    credentials.start_trial(1, 3, "trial-1-3")
    assert (credentials.current, credentials.for_version(1), credentials.for_version(3)) == ("trial-1-3",) * 3
    credentials.end_trial(1, 3)
    assert (credentials.current, credentials.for_version(1), credentials.for_version(3)) == ("own-1",) * 3
    credentials.add(2, "own-2")  # a swap to version 2: its own from then on, version 1's for its last records
    assert (credentials.current, credentials.for_version(1), credentials.for_version(2)) == ("own-2", "own-1", "own-2")


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self):
        self.status = None

    async def abort(self, code, details):
        self.status = (code, details)
        raise _Aborted(details)


def test_a_stream_is_closed_when_idle_but_never_while_an_answer_is_due():
    async def answer_slowly(requests):  # each answer takes three idle periods
        async for request in requests:
            await asyncio.sleep(0.6)
            yield request * 2

    async def stream(sent: list[int], then_wait: float) -> tuple[list[int], _Context]:
        async def requests():
            for value in sent:
                yield value
            await asyncio.sleep(then_wait)

        context, answers = _Context(), []
        with pytest.raises(_Aborted) if then_wait > 0.2 else contextlib.nullcontext():
            async for answer in closed_when_idle(answer_slowly, requests(), context, idle_seconds=0.2):
                answers.append(answer)
        return answers, context

    answers, context = asyncio.run(stream([1, 2], then_wait=5))
    assert answers == [2, 4]  # answered, though nothing came for longer than the idle time
    code, details = context.status
    assert code.name == "DEADLINE_EXCEEDED" and "sent nothing for 0.2 s" in details
    answers, context = asyncio.run(stream([3], then_wait=0))
    assert answers == [6] and context.status is None  # a stream that ends is not closed
