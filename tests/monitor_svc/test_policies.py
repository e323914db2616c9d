"""The Monitor's policy core (Policies) in process: a change is validated and merged field by
field, and privacy terms and federation go only where the deployment is STRICT."""

from __future__ import annotations

import pytest

from mlaas.errors import FailedPrecondition, InvalidArgument
from mlaas.v1 import monitor_pb2 as M
from tests.monitor_svc.test_ingest import cores, gauss, one_batch  # noqa: F401 (fixtures)


def test_a_policy_is_merged_field_by_field_and_private_only_where_strict(cores):  # noqa: F811 (the fixture imported above)
    ingest, policies, store, streams = cores
    ingest.feedback(one_batch("d-1", streams), "gauss", None)  # d-1 is OPEN: its rows came here
    changed = policies.set("d-1", M.MonitorPolicy(min_labels=300), "alpha", None)
    assert (changed.min_labels, changed.window_size, changed.auto_retrain) == (300, 256, True)
    assert policies.get("d-1") == changed
    for private in (M.MonitorPolicy(privacy_epsilon=1.0, privacy_budget=5.0), M.MonitorPolicy(federation="team")):
        with pytest.raises(FailedPrecondition, match="d-1 is OPEN"):
            policies.set("d-1", private, "alpha", None)
    with pytest.raises(InvalidArgument, match="window_size must be between 8 and 4096"):
        policies.set("d-1", M.MonitorPolicy(window_size=4), "alpha", None)
    with pytest.raises(InvalidArgument, match="shadow_retrained is not for federated rounds"):
        policies.set("d-3", M.MonitorPolicy(shadow_retrained=True, federation="team"), "alpha", None)
    # d-0 sent no feedback yet: the scheduler's record says it is OPEN
    with pytest.raises(FailedPrecondition, match="d-0 is OPEN"):
        policies.set("d-0", M.MonitorPolicy(federation="team"), "alpha", None)
    assert policies.get("d-1") == changed and store.federation_of("d-1") == ""  # refusals changed nothing
    assert store.federation_of("d-0") == ""
    assert policies.set("d-2", M.MonitorPolicy(federation="team"), "alpha", None).federation == "team"
    assert store.federation_of("d-2") == "alpha/team"  # by its owner's name
    assert policies.set("d-2", M.MonitorPolicy(federation="-"), "alpha", None).federation == ""
    assert store.federation_of("d-2") == ""
