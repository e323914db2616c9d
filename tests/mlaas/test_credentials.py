"""Minted credentials (mlaas.services.auth.MeshKey, and LiveScopes): signed tokens with an
audience and an expiry, shown only to the services their role calls, refused once expired or
forged, and void once their deployment or job is gone. In process: the scheduler is a stand-in
object here; tests/security/test_runtimes.py tries them on a real mesh."""

from __future__ import annotations

import pytest

from mlaas.errors import NotFound, Unauthenticated, Unavailable
from mlaas.services.auth import MONITOR, REGISTRY, RUNTIME, SCHEDULER, TRAINER, Authenticator, MeshKey
from mlaas.services.live_scopes import LiveScopes
from mlaas.v1 import scheduler_pb2 as S

KEY = MeshKey(b"0123456789abcdef0123456789abcdef")


def _as(audience: str, token: str):
    return Authenticator({"token-alpha": "alpha"}, KEY, audience).identity([("authorization", f"Bearer {token}")])


def test_a_credential_names_its_scope_and_model_and_goes_only_to_its_audience():
    token = KEY.mint(RUNTIME, "d-1", "iris:2", challenger=3)
    for audience in (REGISTRY, MONITOR):
        identity = _as(audience, token)
        assert (identity.role, identity.scope, identity.model, identity.challenger) == (RUNTIME, "d-1", "iris:2", 3)
    for audience in (SCHEDULER, ""):
        with pytest.raises(Unauthenticated, match="is not meant for"):
            _as(audience, token)
    with pytest.raises(Unauthenticated, match="is not meant for"):
        _as(MONITOR, KEY.mint(TRAINER, "j-1", "iris:2"))  # a job reads from the registry only
    assert _as(REGISTRY, KEY.mint(TRAINER, "j-1", "iris:2")).scope == "j-1"


def test_an_expired_or_forged_credential_is_refused_with_the_reason():
    with pytest.raises(Unauthenticated, match="expired"):
        _as(REGISTRY, KEY.mint(RUNTIME, "d-1", "iris:1", seconds=-60))
    other = MeshKey(b"another key, as long as it needs to be").mint(RUNTIME, "d-1", "iris:1")
    with pytest.raises(Unauthenticated, match="invalid credential"):
        _as(REGISTRY, other)
    with pytest.raises(ValueError, match="minted"):
        KEY.mint("alpha", "d-1", "iris:1")
    assert _as(REGISTRY, "token-alpha").tenant == "alpha"


class _Scheduler:
    """Answers as the scheduler would, and counts the questions."""

    def __init__(self):
        self.deployments = {"d-1": S.DEPLOYMENT_STATE_READY}
        self.jobs = {"j-1": S.JOB_STATE_RUNNING}
        self.asked = 0
        self.down = False

    def get(self, deployment_id):
        self.asked += 1
        if self.down:
            raise Unavailable("the scheduler is away")
        if deployment_id not in self.deployments:
            raise NotFound(f"deployment {deployment_id!r} not found")
        return S.Deployment(id=deployment_id, state=self.deployments[deployment_id])

    def training_job(self, job_id):
        self.asked += 1
        return S.TrainingJob(id=job_id, state=self.jobs[job_id])


def test_the_credential_of_a_destroyed_deployment_or_an_ended_job_is_void():
    scheduler = _Scheduler()
    scopes = LiveScopes(scheduler, remember_seconds=0)
    runtime, job = _as(REGISTRY, KEY.mint(RUNTIME, "d-1", "iris:1")), _as(REGISTRY, KEY.mint(TRAINER, "j-1", "iris:1"))
    scopes.check(runtime)
    scopes.check(job)
    scopes.check(_as(REGISTRY, "token-alpha"))  # a tenant's token is not asked about
    assert scheduler.asked == 2
    scheduler.deployments["d-1"] = S.DEPLOYMENT_STATE_DESTROYED
    scheduler.jobs["j-1"] = S.JOB_STATE_SUCCEEDED
    with pytest.raises(Unauthenticated, match="deployment d-1 is gone"):
        scopes.check(runtime)
    with pytest.raises(Unauthenticated, match="training job j-1 is gone"):
        scopes.check(job)
    del scheduler.deployments["d-1"]  # past the retention: NOT_FOUND is gone too
    with pytest.raises(Unauthenticated, match="is gone"):
        scopes.check(runtime)
    scheduler.down = True
    scopes.check(_as(REGISTRY, KEY.mint(RUNTIME, "d-2", "iris:1")))  # signature and expiry hold meanwhile
    with pytest.raises(Unauthenticated, match="deployment d-1 is gone"):
        scopes.check(runtime)  # gone for good: no need to ask a scheduler that is away


def test_an_answer_is_remembered_for_a_few_seconds():
    scheduler = _Scheduler()
    scopes = LiveScopes(scheduler, remember_seconds=60)
    runtime = _as(REGISTRY, KEY.mint(RUNTIME, "d-1", "iris:1"))
    for _ in range(5):
        scopes.check(runtime)
    assert scheduler.asked == 1
