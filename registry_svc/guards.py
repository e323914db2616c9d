"""Deletion guards: who may veto deleting a model version (the scheduler, while it is deployed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mlaas.client import SchedulerClient


class DeletionGuard(Protocol):
    def refusal(self, name: str, version: int) -> str | None:
        """Why the version must not be deleted now, or None to allow it."""


class AllowAll:
    def refusal(self, name: str, version: int) -> str | None:
        return None


class SchedulerGuard:
    """Refuses to delete a version that has a live deployment, asking the scheduler over gRPC.
    When the scheduler cannot be asked, deletion is refused too: a deployed model must not lose
    its artifact because of a network blip."""

    LIVE = ("QUEUED", "PLACING", "STARTING", "READY", "UPDATING", "CACHED")

    def __init__(self, scheduler: SchedulerClient):
        self._scheduler = scheduler  # one channel, made by app.py, with the registry's token

    def refusal(self, name: str, version: int) -> str | None:
        from mlaas.errors import MlaasError
        from mlaas.v1 import scheduler_pb2

        states = [scheduler_pb2.DeploymentState.Value(f"DEPLOYMENT_STATE_{s}") for s in self.LIVE]
        try:
            live = self._scheduler.list(model_name=name, model_version=version, states=states)
        except MlaasError as err:
            return f"the scheduler at {self._scheduler.address} cannot confirm it is not deployed ({err.message})"
        if not live:
            return None
        # Deployments may be other tenants' (a public model): say how many, never which.
        return f"it has {len(live)} live deployment(s); they must be decommissioned first"
