"""The scheduler keeps a STRICT deployment's privacy terms and charges every round on its node
(mlaas/services/privacy_terms.py); the Monitor's policy states them there and reads back what
was spent, so that it does not start a round the terms would refuse."""

from __future__ import annotations

import logging

from mlaas.client import SchedulerClient
from mlaas.errors import MlaasError

log = logging.getLogger(__name__)


class SchedulerPrivacy:
    def __init__(self, scheduler: SchedulerClient, own_token: str | None):
        self._scheduler = scheduler
        self._own_token = own_token

    def state(self, deployment_id: str, epsilon: float, budget: float, caller_token: str | None) -> None:
        """Sets the deployment's terms as the caller (the owner: the scheduler checks it)."""
        self._scheduler.with_token(caller_token).set_privacy(deployment_id, epsilon, budget)

    def spent(self, deployment_id: str) -> float | None:
        """What the deployment's rounds spent, or None when the scheduler cannot say now."""
        try:
            return self._scheduler.with_token(self._own_token).get(deployment_id).privacy.spent
        except MlaasError as err:
            log.warning("cannot read deployment %s's privacy spent: %s", deployment_id, err.message)
            return None
