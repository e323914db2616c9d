"""The Monitor's ingest core in process (monitor_svc/ingest.py), built by build_monitor on a real
SQLite store and a real registry, with no server: feedback refused whole when it names a version
its credential does not, or carries a STRICT deployment's rows; an OPEN deployment's rows and
labels matched; a STRICT deployment's labels refused. The `cores` fixture serves
test_policies.py too; the rpcs over these run in test_service.py."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from mlaas.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from mlaas.services.label_store import MAX_LABELS_PER_MESSAGE
from mlaas.services.settings import ServerSettings
from mlaas.v1 import monitor_pb2 as M
from monitor_svc.app import build_monitor
from monitor_svc.ingest import Ingest
from monitor_svc.policies import Policies
from monitor_svc.privacy import SchedulerPrivacy
from monitor_svc.settings import MonitorSettings
from tests.monitor_svc.test_service import feedback, gauss, tensor  # noqa: F401 (fixture)

STRICT = "d-strict"


@pytest.fixture
def cores(gauss, tmp_path):  # noqa: F811 (the fixture imported above)
    """(Ingest, Policies, the Monitor's store, the gauss streams): deployment d-strict is STRICT
    to the Ingest; d-0 is OPEN to the Policies, whatever sent no feedback STRICT."""
    registry_address, streams = gauss
    settings = MonitorSettings(
        server=ServerSettings(port=0, metrics_port=-1), data_dir=tmp_path / "monitor",
        registry_address=registry_address, scheduler_address="127.0.0.1:1",
    )  # fmt: skip
    monitor = build_monitor(settings)  # not started: its cores only
    try:
        ingest = Ingest(monitor.store, monitor.deployments, lambda deployment_id: deployment_id == STRICT)
        strict_at_scheduler = lambda deployment_id: deployment_id != "d-0"  # noqa: E731
        policies = Policies(monitor.store, monitor.deployments, SchedulerPrivacy(None, None), strict_at_scheduler)
        yield ingest, policies, monitor.store, streams
    finally:
        monitor.store.close()


def one_batch(deployment_id: str, streams, version: int = 1) -> M.IngestFeedbackRequest:
    X = streams["null_0"][:100]
    ids = [f"r-{i}" for i in range(100)]
    return next(feedback(deployment_id, X, (X[:, 0] > 0).astype(np.int64), ids, version=version))


def test_feedback_is_refused_whole_or_taken_whole(cores):
    ingest, _, store, streams = cores
    with pytest.raises(InvalidArgument, match=r"version\(s\) \[2\] does not come from deployment d-1"):
        ingest.feedback(one_batch("d-1", streams, version=2), "gauss", {1})  # its credential names version 1
    with pytest.raises(PermissionDenied, match="is STRICT: no row of it leaves its node"):
        ingest.feedback(one_batch(STRICT, streams), "gauss", None)
    assert store.label_count("d-1") == (0, 0) and store.labeled_since("d-1", 0) == []
    accepted, edges = ingest.feedback(one_batch("d-1", streams), "gauss", {1})
    assert accepted == 100 and edges is None
    taken, waiting = ingest.labels("d-1", [("r-1", "1"), ("r-2", "0"), ("r-late", "1")])
    assert (taken, waiting) == (3, 1) and store.label_count("d-1") == (3, 2)  # r-late waits for its prediction
    with pytest.raises(FailedPrecondition, match="is STRICT: its labels stay on its node"):
        ingest.labels(STRICT, [("r-1", "1")])
    assert store.label_count(STRICT) == (0, 0)


def test_labels_that_make_no_sense_are_refused_before_anything_is_stored(cores, registry):
    """One message of labels holds the store while it is written, so it is bounded (a tenant's
    two million labels held everyone's for 37 s); a regression's label must be a number (sent
    as text, "nan" switched its performance drift off)."""
    from mlaas.client import RegistryClient
    from mlaas.export import register_sklearn

    ingest, _, store, streams = cores
    too_many = [M.Label(request_id=f"r-{i}", class_label="1") for i in range(MAX_LABELS_PER_MESSAGE + 1)]
    request = M.ReportLabelsRequest(deployment_id="d-1", labels=too_many)
    with pytest.raises(InvalidArgument, match=f"send at most {MAX_LABELS_PER_MESSAGE} per message"):
        ingest.labels_stream(iter([request]), lambda deployment_id: None, "alice/")
    X = streams["reference_0"][:300]
    with RegistryClient(f"127.0.0.1:{registry.port}") as client:
        register_sklearn(client, LinearRegression().fit(X, X[:, 0]), "gauss-level", X, reference_data=X)
    record = one_batch("d-reg", streams).records[0]
    record.outputs[0].CopyFrom(tensor("variable", X[:100, :1].astype(np.float32)))
    ingest.feedback(M.IngestFeedbackRequest(deployment_id="d-reg", model_name="gauss-level", records=[record]),
                    "gauss-level", None)  # fmt: skip
    for text in ("nan", "inf", "abc", ""):
        with pytest.raises(InvalidArgument, match=f"d-reg is a regression: {text!r} is not a finite number"):
            ingest.labels("d-reg", [("r-1", "0.5"), ("r-2", text)])
    assert store.label_count("d-reg") == (0, 0) and store.label_count("d-1") == (0, 0)
    assert ingest.labels("d-reg", [("r-1", "0.5"), ("r-2", repr(-1.25))]) == (2, 0)


def test_a_versions_first_feedback_does_not_wait_for_its_calibration(cores, monkeypatch):
    """Calibrating a version's drift scans simulates for seconds of CPU: the feedback that brings
    a rollout's first rows is taken at once (its labels can match), and the drift its rows show
    is found once the scans are calibrated, though no more feedback comes."""
    from monitor_svc.detectors import scan

    ingest, _, store, streams = cores
    gate = threading.Event()

    def slow(*args, cancelled):
        assert gate.wait(60), "the test let calibration go on"
        return 6.0  # a threshold the shift passes; the simulation itself is test_scan.py's

    monkeypatch.setattr(scan, "THRESHOLDS", scan.Thresholds(calibrator=slow))  # none known from other tests
    X = streams["shift_0"][:400]
    ids = [f"r-{i}" for i in range(400)]
    for request in feedback("d-1", X, (X[:, 0] > 0).astype(np.int64), ids):
        assert ingest.feedback(request, "gauss", {1}) == (100, None)
    assert ingest.labels("d-1", [("r-1", "1")]) == (1, 0)  # matched: its prediction is stored
    assert store.events("d-1") == []  # the rows wait in the scans
    gate.set()
    deadline = time.monotonic() + 60
    while not (data := [e for e in map(M.DriftEvent.FromString, (r for _, r in store.events("d-1")))
                        if e.kind == M.DRIFT_KIND_DATA]):  # fmt: skip
        assert time.monotonic() < deadline, "the waiting rows were never scanned"
        time.sleep(0.05)
    assert "x0" in data[0].features, data[0]
