"""What callers read from the Monitor, in process (monitor_svc/views.py) on a real SQLite store:
drift events a page at a time, and the watches: events from now on, every step of each
retraining once, woken by a change, ended when the caller's access ends. The drift report
itself is read over gRPC in test_service.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from mlaas.errors import InvalidArgument, NotFound
from mlaas.v1 import monitor_pb2 as M
from monitor_svc.changes import Changes
from monitor_svc.store import MonitorStore
from monitor_svc.views import Views


@pytest.fixture
def views(tmp_path):
    store, changes = MonitorStore(tmp_path / "monitor.sqlite3"), Changes()
    yield Views(store, None, changes), store, changes  # no deployments: no report is read here
    store.close()


def event(deployment: str, n: int) -> bytes:
    return M.DriftEvent(deployment_id=deployment, id=f"event-{n}").SerializeToString()


def test_events_come_a_page_at_a_time_and_a_token_serves_its_own_query(views):
    reader, store, _ = views
    for n in range(5):
        store.add_event("d-1", event("d-1", n))
    store.add_event("d-2", event("d-2", 9))
    pages, request = [], M.ListDriftEventsRequest(deployment_id="d-1", page_size=2)
    while True:
        page = reader.events(request)
        pages.append([e.id for e in page.events])
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert pages == [["event-0", "event-1"], ["event-2", "event-3"], ["event-4"]]
    first = reader.events(M.ListDriftEventsRequest(deployment_id="d-1", page_size=2))
    with pytest.raises(InvalidArgument, match="belongs to a different query"):
        reader.events(M.ListDriftEventsRequest(deployment_id="d-2", page_size=2, page_token=first.next_page_token))


class Watch:
    """A watch pulled on a thread, as a server's stream is, until `stop` (or its end)."""

    def __init__(self, items: Iterator, going: threading.Event):
        self.got: list = []
        self.error: Exception | None = None
        self._going = going
        self._thread = threading.Thread(target=self._pull, args=(items,), daemon=True)
        self._thread.start()

    def _pull(self, items: Iterator) -> None:
        try:
            self.got.extend(items)
        except Exception as err:  # what the watch raised: the stream's status
            self.error = err

    def until(self, count: int) -> list:
        deadline = time.monotonic() + 10
        while len(self.got) < count:
            assert time.monotonic() < deadline, self.got
            time.sleep(0.01)
        return self.got

    def stop(self, changes: Changes) -> None:
        self._going.clear()
        changes.notify()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()


def test_a_drift_watch_sends_new_events_only_and_ends_with_the_callers_access(views):
    reader, store, changes = views
    store.add_event("d-1", event("d-1", 0))  # before the watch: the report has it
    going, started = threading.Event(), threading.Event()
    going.set()

    def go_on() -> bool:
        started.set()
        if going.is_set():
            return True
        raise NotFound("deployment 'd-1' not found")  # the caller's lease was dropped

    watch = Watch(reader.watch_events("d-1", go_on), going)
    assert started.wait(10)
    store.add_event("d-2", event("d-2", 1))  # another deployment's
    store.add_event("d-1", event("d-1", 2))
    changes.notify()
    assert [e.id for e in watch.until(1)] == ["event-2"]
    watch.stop(changes)
    assert isinstance(watch.error, NotFound) and len(watch.got) == 1


def test_a_retraining_watch_sends_each_state_once(views):
    reader, store, changes = views
    record = M.Retraining(id="r-1", deployment_id="d-1", state=M.RETRAINING_STATE_TRAINING)
    store.put_retraining("r-1", "d-1", record.SerializeToString())
    going = threading.Event()
    going.set()
    watch = Watch(reader.watch_retrainings("d-1", going.is_set), going)
    assert [r.state for r in watch.until(1)] == [M.RETRAINING_STATE_TRAINING]  # as it is now
    store.put_retraining("r-1", "d-1", record.SerializeToString())  # stored again, unchanged
    record.state = M.RETRAINING_STATE_EVALUATING
    store.put_retraining("r-1", "d-1", record.SerializeToString())
    changes.notify()
    assert [r.state for r in watch.until(2)] == [M.RETRAINING_STATE_TRAINING, M.RETRAINING_STATE_EVALUATING]
    watch.stop(changes)
    assert watch.error is None and len(watch.got) == 2
