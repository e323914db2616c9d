"""The waiting room (scheduler_svc/waiting.py) in process, on a real Redis: a request no node can
hold goes aside with the reason instead of standing in the queue, comes back once the capacity
is there, fails after the placement timeout, and a request lost between store and queue (its
scheduler was killed) is admitted again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.queue import DeploymentQueue
from scheduler_svc.waiting import ADMISSION_SECONDS, WaitingRoom
from tests.scheduler_svc.test_placer import placing, queued

S = scheduler_pb2


@pytest.fixture
def room(tmp_path: Path):
    """(the waiting room, the store, the queue, the training jobs holding capacity): nodes a (2
    CPUs) and b (1 CPU); each deployment of test_placer.queued asks for 1 CPU per replica."""
    with placing(tmp_path, placement_timeout_seconds=60) as p:
        queue = DeploymentQueue(p.client)
        yield WaitingRoom(p.settings, p.store, queue, p.placer), p.store, queue, p.jobs


def created_ago(store, deployment: S.Deployment, seconds: float) -> S.Deployment:
    return store.update(deployment.id, lambda d: d.created_at.FromSeconds(int(time.time() - seconds)))


def test_a_request_that_fits_is_queued_and_one_that_does_not_waits_aside_with_why(room):
    waiting, store, queue, _ = room
    fits, too_big = queued(store, "fits"), queued(store, "too-big", replicas=2, strict="b")
    waiting.admit(fits)
    waiting.admit(too_big)
    assert queue.in_stream() == {fits.id} and queue.parked() == [too_big.id]
    aside = store.get(too_big.id)
    assert aside.state == S.DEPLOYMENT_STATE_QUEUED and "b" in aside.reason  # the owner sees why


def test_a_request_aside_goes_back_to_the_queue_once_capacity_is_free(room):
    waiting, store, queue, jobs = room
    jobs.extend([("a", types_pb2.Resources(cpu_millicores=2000)), ("b", types_pb2.Resources(cpu_millicores=1000))])
    deployment = queued(store, "later")
    waiting.admit(deployment)
    waiting.revisit()
    assert queue.parked() == [deployment.id] and queue.in_stream() == set()  # still full
    jobs.clear()  # the training jobs ended
    waiting.revisit()
    assert queue.parked() == [] and queue.in_stream() == {deployment.id}


def test_a_request_aside_past_the_placement_timeout_fails_with_the_reason(room):
    waiting, store, queue, _ = room
    deployment = queued(store, "never", replicas=2, strict="b")
    waiting.admit(deployment)
    created_ago(store, deployment, 61)
    waiting.revisit()
    failed = store.get(deployment.id)
    assert failed.state == S.DEPLOYMENT_STATE_FAILED and failed.reason.startswith("not placed within 60s: ")
    assert queue.parked() == [] and queue.in_stream() == set()


def test_a_queued_request_neither_queued_nor_aside_is_admitted_again_once_it_settled(room):
    waiting, store, queue, _ = room
    lost = queued(store, "lost")  # stored; its scheduler died before queueing it
    waiting.revisit()
    assert queue.in_stream() == set()  # younger than ADMISSION_SECONDS: its Deploy may be queueing it
    created_ago(store, lost, ADMISSION_SECONDS + 5)
    waiting.revisit()
    assert queue.in_stream() == {lost.id}
    waiting.revisit()
    assert [c.deployment_id for c in queue.claim("worker", count=10, block_ms=10)] == [lost.id]  # once


def test_a_request_decommissioned_while_aside_leaves_the_room(room):
    waiting, store, queue, _ = room
    deployment = queued(store, "gone", replicas=2, strict="b")
    waiting.admit(deployment)
    store.update(deployment.id, lambda d: None, S.DEPLOYMENT_STATE_DESTROYED)
    waiting.revisit()
    assert queue.parked() == [] and queue.in_stream() == set()
