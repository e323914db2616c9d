"""How the data plane answers a failed request (dataplane.as_caller_error): the caller's
mistakes with their reason, bugs as INTERNAL, logged with their traceback. The pipeline itself
runs in every runtime test (test_rpcs, test_batching, the clients)."""

from __future__ import annotations

import logging

from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from inference_svc.dataplane import as_caller_error
from mlaas.errors import Internal, InvalidArgument, ResourceExhausted


def test_the_callers_mistakes_keep_their_reason_and_bugs_are_internal_and_logged(caplog):
    refused = ResourceExhausted("queue is full")
    assert as_caller_error(refused) is refused
    rejected = as_caller_error(ort_errors.InvalidArgument("Got invalid dimensions for input: X"))
    assert isinstance(rejected, InvalidArgument) and "Got invalid dimensions" in rejected.message
    with caplog.at_level(logging.ERROR):
        bug = as_caller_error(KeyError("/runtime/cache/path"))
    assert isinstance(bug, Internal) and "KeyError" in bug.message and "/runtime" not in bug.message
    assert "inference failed unexpectedly" in caplog.text and "/runtime/cache/path" in caplog.text
