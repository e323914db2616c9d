"""Deploy's core in process (scheduler_svc/deploys.py): a bad request is refused with the field
and the reason before the registry is asked or anything is stored. What follows (idempotency,
leases on shared deployments, quotas, admission) runs on real parts in test_service.py and
test_tenancy.py."""

from __future__ import annotations

import pytest

from mlaas.errors import InvalidArgument, NotFound
from mlaas.services.settings import ServerSettings
from mlaas.v1 import scheduler_pb2 as S
from mlaas.v1 import types_pb2
from scheduler_svc.deploys import Deploys
from scheduler_svc.settings import SchedulerSettings, parse_nodes


class _Untouched:
    """Stands for the registry, the store, the lifecycle and the waiting room: none may be used."""

    def __getattr__(self, name):
        raise AssertionError(f"a refused request reached {name}")


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (S.DeployRequest(), InvalidArgument, "model.name is required"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="m"), replicas=65), InvalidArgument, "between 1 and 64"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="m"), mode=S.PLACEMENT_MODE_STRICT), InvalidArgument,
         "STRICT placement needs node"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="m"), mode=S.PLACEMENT_MODE_STRICT, node="node-z"), NotFound,
         "node 'node-z' does not exist; nodes: node-a, node-b"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="m"), backend="kubernetes"), InvalidArgument,
         "backend 'kubernetes' is not available here; use 'local'"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="m"), resources=types_pb2.Resources(memory_bytes=-1)),
         InvalidArgument, "resources.memory_bytes must not be negative"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="m"), autoscaling=S.AutoscalingPolicy(
            min_replicas=3, max_replicas=2, target_inflight=1)), InvalidArgument,
         "max_replicas must be between min_replicas and 64"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="m"), autoscaling=S.AutoscalingPolicy(
            min_replicas=1, max_replicas=2)), InvalidArgument, "exactly one target"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="m"), autoscaling=S.AutoscalingPolicy(
            min_replicas=1, max_replicas=2, target_p99_ms=-5)), InvalidArgument, "target_p99_ms must be a number"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="m"), autoscaling=S.AutoscalingPolicy(
            min_replicas=40, max_replicas=40, target_inflight=1)), InvalidArgument, "min_replicas must be at most 32"),
        (S.DeployRequest(model=types_pb2.ModelRef(name="m"), replicas=5, autoscaling=S.AutoscalingPolicy(
            min_replicas=1, max_replicas=2, target_inflight=4)), InvalidArgument,
         "replicas must be within the autoscaling policy's min_replicas and max_replicas"),
    ],
)  # fmt: skip
def test_a_bad_request_is_refused_before_anything_is_asked_or_stored(request_, error, message, tmp_path):
    nodes = parse_nodes("node-a:cpu=2,memory=4Gi;node-b:cpu=2,memory=4Gi")
    settings = SchedulerSettings(server=ServerSettings(port=0), data_dir=tmp_path, nodes=nodes)
    untouched = _Untouched()
    deploys = Deploys(settings, untouched, untouched, untouched, untouched, quotas=True)
    with pytest.raises(error, match=message):
        deploys.deploy(request_, "alpha", "token-alpha")
