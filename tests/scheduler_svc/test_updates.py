"""The scheduler's cores for deployments that exist, in process (scheduler_svc/updates.py,
access.py, views.py, training.py) on a real Redis and a real registry: who sees and steers a
deployment, a change moving a READY deployment to UPDATING exactly once, and a bad request
refused with its reason, leaving the deployment as it was. What a worker does with an UPDATING
deployment runs on real replicas in test_rollout.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from sklearn.linear_model import LogisticRegression

from mlaas.client import RegistryClient
from mlaas.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from mlaas.export import register_sklearn
from mlaas.local.redis_embedded import EmbeddedRedis
from mlaas.services.auth import MONITOR, Authenticator
from mlaas.services.settings import ServerSettings
from mlaas.v1 import scheduler_pb2 as S
from mlaas.v1 import types_pb2
from scheduler_svc.access import Access
from scheduler_svc.deploys import Deploys
from scheduler_svc.jobs import JobStore
from scheduler_svc.lifecycle import Lifecycle
from scheduler_svc.queue import DeploymentQueue
from scheduler_svc.settings import SchedulerSettings, parse_nodes
from scheduler_svc.store import DeploymentStore
from scheduler_svc.training import Training
from scheduler_svc.updates import Updates
from scheduler_svc.views import Views

TOKENS = {"tok-alpha": "alpha", "tok-beta": "beta", "tok-gamma": "gamma", "tok-delta": "delta", "tok-monitor": MONITOR}


class _Admitted:
    """Stands for the waiting room: what Deploy admits for placement is only noted."""

    def admit(self, deployment: S.Deployment) -> None:
        pass


class _Untouched:
    """Stands for what a refused request must never reach (the backend, the training jobs)."""

    def __getattr__(self, name):
        raise AssertionError(f"a refused request reached {name}")


@dataclass
class Cores:
    store: DeploymentStore
    queue: DeploymentQueue
    lifecycle: Lifecycle
    updates: Updates
    training: Training
    views: Views
    deploys: Deploys

    def ready(self, tenant: str = "alpha", model: str = "iris", mode: int = S.PLACEMENT_MODE_OPEN) -> S.Deployment:
        """A READY deployment of `model`:1 owned by `tenant`, with its lease, shared if OPEN."""
        deployment, _ = self.store.create(S.Deployment(
            model=types_pb2.ModelRef(name=model, version=1), mode=mode, node="node-a", replicas=1, tenant=tenant,
        ))  # fmt: skip
        if mode == S.PLACEMENT_MODE_OPEN:
            self.lifecycle.mark_shared(deployment)
        self.lifecycle.add_lease(deployment.id, tenant)
        return self.store.update(deployment.id, lambda d: None, S.DEPLOYMENT_STATE_READY, "placed")


@pytest.fixture
def cores(tmp_path, registry, iris_model) -> Iterator[Cores]:
    """The cores over an embedded Redis, under auth (alpha, beta, gamma, the Monitor), with iris
    versions 1 and 2 in the registry."""
    model, X, y = iris_model
    with RegistryClient(f"127.0.0.1:{registry.port}") as client:
        register_sklearn(client, model, "iris", X)
        register_sklearn(client, LogisticRegression(C=0.05, max_iter=300).fit(X, y), "iris", X)
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = redis.Redis.from_url(server.url)
    store = DeploymentStore(client, 3600)
    queue = DeploymentQueue(client)
    lifecycle = Lifecycle(client, store, _Untouched())
    access = Access(Authenticator(TOKENS), lifecycle)
    settings = SchedulerSettings(
        server=ServerSettings(port=0), data_dir=tmp_path, nodes=parse_nodes("node-a:cpu=2,memory=4Gi")
    )
    registry_client = RegistryClient(f"127.0.0.1:{registry.port}")
    try:
        yield Cores(
            store, queue, lifecycle, Updates(store, queue, lifecycle, access, registry_client),
            Training(_Untouched(), JobStore(client), store, access, registry_client, "local"),
            Views(settings, store, JobStore(client), access),
            Deploys(settings, store, lifecycle, _Admitted(), registry_client, quotas=True),
        )  # fmt: skip
    finally:
        registry_client.close()
        client.close()
        server.stop()


def test_a_stranger_does_not_see_a_deployment_and_a_lease_holder_does_not_steer_it(cores):
    deployment = cores.ready()
    cores.lifecycle.add_lease(deployment.id, "beta")
    scale = S.ScaleRequest(deployment_id=deployment.id, replicas=2)
    roll = S.UpdateDeploymentRequest(deployment_id=deployment.id, model=types_pb2.ModelRef(version=2))
    for attempt in (
        lambda: cores.updates.scale(scale, "gamma"),
        lambda: cores.updates.update(roll, "gamma", "tok-gamma"),
        lambda: cores.updates.decommission(S.DecommissionRequest(deployment_id=deployment.id), "gamma"),
        lambda: cores.views.deployment(deployment.id, "gamma"),
    ):
        with pytest.raises(NotFound, match=f"deployment '{deployment.id}' not found"):
            attempt()
    with pytest.raises(PermissionDenied, match=r"only the owner of deployment .* may scale it"):
        cores.updates.scale(scale, "beta")
    with pytest.raises(PermissionDenied, match="may update it"):
        cores.updates.update(roll, "beta", "tok-beta")
    with pytest.raises(PermissionDenied, match="may scale it"):  # the Monitor rolls versions, never scales
        cores.updates.scale(scale, MONITOR)
    assert cores.views.deployment(deployment.id, "beta").id == deployment.id  # the lease holder sees it
    listed = [d.id for d in cores.views.deployments(S.ListDeploymentsRequest(), "beta").deployments]
    assert deployment.id not in listed  # it lists its own only
    with pytest.raises(InvalidArgument, match=r"states \[99\] are not deployment states"):
        cores.views.deployments(S.ListDeploymentsRequest(states=[99]), "alpha")
    unchanged = cores.store.get(deployment.id)
    assert (unchanged.state, unchanged.replicas) == (S.DEPLOYMENT_STATE_READY, 1)


def test_a_change_moves_a_ready_deployment_to_updating_once(cores):
    deployment = cores.ready()
    for replicas in (0, 65):
        with pytest.raises(InvalidArgument, match="replicas must be between 1 and 64"):
            cores.updates.scale(S.ScaleRequest(deployment_id=deployment.id, replicas=replicas), "alpha")
    same = cores.updates.scale(S.ScaleRequest(deployment_id=deployment.id, replicas=1), "alpha")
    assert same.state == S.DEPLOYMENT_STATE_READY  # nothing to do
    scaled = cores.updates.scale(S.ScaleRequest(deployment_id=deployment.id, replicas=2), "alpha")
    assert (scaled.state, scaled.replicas) == (S.DEPLOYMENT_STATE_UPDATING, 2)
    assert [c.deployment_id for c in cores.queue.claim("w", 10, block_ms=1)] == [deployment.id]  # for a worker
    with pytest.raises(FailedPrecondition, match="is UPDATING; only a READY one can change"):
        cores.updates.scale(S.ScaleRequest(deployment_id=deployment.id, replicas=3), "alpha")
    assert cores.store.get(deployment.id).replicas == 2


def test_an_update_rolls_or_tries_a_version_of_the_same_model(cores):
    deployment = cores.ready()

    def update(**fields) -> S.Deployment:
        return cores.updates.update(S.UpdateDeploymentRequest(deployment_id=deployment.id, **fields), "alpha", None)

    refused = [
        (InvalidArgument, "serves iris; deploy other on its own", {"model": types_pb2.ModelRef(name="other")}),
        (NotFound, "iris:9", {"model": types_pb2.ModelRef(version=9)}),
        (InvalidArgument, "privacy goes alone", {"model": types_pb2.ModelRef(version=2),
                                                 "privacy": S.PrivacyTerms(epsilon=1, budget=2)}),
        (InvalidArgument, "end_trial goes alone", {"model": types_pb2.ModelRef(version=2),
                                                   "end_trial": S.TRIAL_END_ABORT}),
        (FailedPrecondition, "has no trial to end", {"end_trial": S.TRIAL_END_PROMOTE}),
    ]  # fmt: skip
    for error, message, fields in refused:
        with pytest.raises(error, match=message):
            update(**fields)
    assert cores.store.get(deployment.id).state == S.DEPLOYMENT_STATE_READY
    assert update(model=types_pb2.ModelRef(version=1)).state == S.DEPLOYMENT_STATE_READY  # serves it already

    cores.lifecycle.add_lease(deployment.id, "beta")  # another tenant deployed version 1 of it
    with pytest.raises(FailedPrecondition, match="shared with other tenants, who deployed version 1"):
        update(model=types_pb2.ModelRef(version=2))
    cores.lifecycle.drop_lease(deployment.id, "beta")
    trying = update(model=types_pb2.ModelRef(version=2), trial_mode=S.TRIAL_MODE_SHADOW)
    assert trying.state == S.DEPLOYMENT_STATE_UPDATING and trying.trial == S.Trial(version=2, mode=S.TRIAL_MODE_SHADOW)
    assert trying.model.version == 1  # the challenger runs beside what serves
    cores.store.update(deployment.id, lambda d: None, S.DEPLOYMENT_STATE_READY, "the trial runs")
    # A verdict on another trial (a late one, of a trial ended and started again) ends nothing.
    for champion, challenger in ((1, 3), (2, 2)):
        with pytest.raises(FailedPrecondition, match=r"tries version 2 beside version 1 now, not the trial that end"):
            update(end_trial=S.TRIAL_END_PROMOTE, trial_champion_version=champion, trial_challenger_version=challenger)
    assert cores.store.get(deployment.id).trial.version == 2
    ended = update(end_trial=S.TRIAL_END_ABORT, trial_champion_version=1, trial_challenger_version=2)
    assert ended.state == S.DEPLOYMENT_STATE_UPDATING and not ended.HasField("trial")


def test_an_autoscaling_policy_is_its_owners_to_set_checked_and_scale_then_defers_to_it(cores):
    deployment = cores.ready()
    cores.lifecycle.add_lease(deployment.id, "beta")
    good = S.AutoscalingPolicy(min_replicas=2, max_replicas=4, target_inflight=3.0)

    def autoscale(tenant: str = "alpha", **fields) -> S.Deployment:
        request = S.UpdateDeploymentRequest(deployment_id=deployment.id, **fields)
        return cores.updates.update(request, tenant, f"tok-{tenant}")

    with pytest.raises(NotFound, match=f"deployment '{deployment.id}' not found"):
        autoscale("gamma", autoscaling=good)
    with pytest.raises(PermissionDenied, match="may update it"):  # a lease holder does not steer it
        autoscale("beta", autoscaling=good)
    refused = [
        ("min_replicas must be at least 0",
         {"autoscaling": S.AutoscalingPolicy(min_replicas=-1, max_replicas=2, target_inflight=1)}),
        ("max_replicas must be at least 1", {"autoscaling": S.AutoscalingPolicy(target_inflight=1)}),
        ("max_replicas must be between min_replicas and 64",
         {"autoscaling": S.AutoscalingPolicy(min_replicas=3, max_replicas=2, target_inflight=1)}),
        ("target_inflight must be a number between",
         {"autoscaling": S.AutoscalingPolicy(min_replicas=1, max_replicas=2, target_inflight=float("nan"))}),
        ("goes alone", {"autoscaling": good, "model": types_pb2.ModelRef(version=2)}),
        ("goes alone", {"autoscaling": good, "clear_autoscaling": True}),
    ]  # fmt: skip
    for message, fields in refused:
        with pytest.raises(InvalidArgument, match=message):
            autoscale(**fields)
    unchanged = cores.store.get(deployment.id)
    assert not unchanged.HasField("autoscaling") and unchanged.state == S.DEPLOYMENT_STATE_READY
    # beta holds a lease: its traffic would scale what alpha pays for.
    with pytest.raises(FailedPrecondition, match="is shared with other tenants: their traffic would scale"):
        autoscale(autoscaling=good)
    cores.lifecycle.drop_lease(deployment.id, "beta")

    # Its 1 replica is under the new minimum: brought up to 2 at once, in one change.
    scaling = autoscale(autoscaling=good)
    assert (scaling.state, scaling.replicas, scaling.autoscaling) == (S.DEPLOYMENT_STATE_UPDATING, 2, good)
    # While it changes, a policy that needs other replicas is refused whole: nothing is written.
    with pytest.raises(FailedPrecondition, match="only a READY one can change"):
        autoscale(autoscaling=S.AutoscalingPolicy(min_replicas=1, max_replicas=1, target_inflight=7.0))
    assert cores.store.get(deployment.id).autoscaling == good
    cores.store.update(deployment.id, lambda d: None, S.DEPLOYMENT_STATE_READY, "scaled")
    # The autoscaler's own change stands only within the policy as it is when it is made.
    with pytest.raises(FailedPrecondition):
        cores.updates.rescale(deployment.id, 5, "autoscaling from 2 to 5", autoscaler=True)
    assert cores.store.get(deployment.id).replicas == 2
    with pytest.raises(FailedPrecondition, match="is autoscaled between 2 and 4 replicas; change its policy"):
        cores.updates.scale(S.ScaleRequest(deployment_id=deployment.id, replicas=3), "alpha")
    off = autoscale(clear_autoscaling=True)
    assert not off.HasField("autoscaling") and (off.state, off.replicas) == (S.DEPLOYMENT_STATE_READY, 2)
    assert cores.updates.scale(S.ScaleRequest(deployment_id=deployment.id, replicas=3), "alpha").replicas == 3


def test_an_autoscaled_deployment_is_shared_with_no_other_tenant(cores):
    """Another tenant's traffic would scale what the owner pays for (and spend its replica cap):
    a Deploy with a policy makes a deployment of its own, which no other Deploy leases."""
    policy = S.AutoscalingPolicy(min_replicas=1, max_replicas=3, target_inflight=2.0)
    request = S.DeployRequest(model=types_pb2.ModelRef(name="iris", version=1), autoscaling=policy)
    owned = cores.deploys.deploy(request, "alpha", "tok-alpha").deployment
    plain = S.DeployRequest(model=types_pb2.ModelRef(name="iris", version=1))
    beta = cores.deploys.deploy(plain, "beta", "tok-beta").deployment
    assert beta.id != owned.id and not beta.HasField("autoscaling")
    assert cores.deploys.deploy(plain, "gamma", "tok-gamma").deployment.id == beta.id  # beta's is shared
    assert cores.deploys.deploy(request, "gamma", "tok-gamma").deployment.id not in (owned.id, beta.id)
    assert cores.deploys.deploy(plain, "delta", "tok-delta").deployment.id == beta.id
    assert set(cores.lifecycle.leases(owned.id).values()) == {"alpha"}


def test_a_training_request_is_checked_before_any_job_starts(cores):
    open_deployment = cores.ready()
    strict = cores.ready(mode=S.PLACEMENT_MODE_STRICT)

    def run(tenant: str = "alpha", **fields) -> S.TrainingJob:
        return cores.training.run(S.RunTrainingJobRequest(**fields), tenant, f"tok-{tenant}")

    def node_round(deployment: S.Deployment, **fields) -> S.NodeRound:
        return S.NodeRound(deployment_id=deployment.id, confidence=0.95, **fields)

    refused = [
        (InvalidArgument, "output_uri is chosen by the scheduler", {"output_uri": "file:///tmp/x"}),
        (InvalidArgument, "model.name is required", {}),
        (InvalidArgument, "a training job needs its data", {"model": types_pb2.ModelRef(name="iris")}),
        (InvalidArgument, "not both", {"model": types_pb2.ModelRef(name="iris"), "input_uri": "f", "input_data": b"x"}),
        (InvalidArgument, "confidence must be between 0 and 1", {"node_round": S.NodeRound(deployment_id="d-x")}),
        (InvalidArgument, r"its input \(input_data or input_uri\) is the candidate model",
         {"node_round": node_round(strict), "input_data": b"x"}),
        (FailedPrecondition, "is OPEN: its labels are in the Monitor", {"node_round": node_round(open_deployment)}),
        (InvalidArgument, "serves iris:1, not that model",
         {"node_round": node_round(strict), "model": types_pb2.ModelRef(name="iris", version=2)}),
    ]  # fmt: skip
    for error, message, fields in refused:
        with pytest.raises(error, match=message):
            run(**fields)
    with pytest.raises(NotFound, match=f"deployment '{strict.id}' not found"):  # another tenant's round
        run("gamma", node_round=node_round(strict))
    with pytest.raises(PermissionDenied, match="only the owner of iris may train it"):  # registered by another
        run("alpha", model=types_pb2.ModelRef(name="iris"), input_data=b"x")
    with pytest.raises(NotFound, match="training job 'j-missing' not found"):
        cores.training.get("j-missing", "alpha")
