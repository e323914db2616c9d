"""The runtime's deployment access (inference_svc/access.py) as a unit, with the scheduler's
answer given by the test: a yes is remembered briefly, a no never; concurrent calls share one
question; a scheduler outage does not stop tenants it allowed recently, and does not let anyone
else in. (The whole path on real servers: tests/security/test_runtimes.py.)"""

from __future__ import annotations

import asyncio

import pytest

from inference_svc.access import DeploymentAccess
from mlaas.errors import NotFound, Unavailable


class Scheduler:
    def __init__(self):
        self.allowed: set[str | None] = {"token-alpha"}
        self.up = True
        self.asked = 0

    async def ask(self, token: str | None) -> None:
        self.asked += 1
        await asyncio.sleep(0.01)
        if not self.up:
            raise Unavailable("the scheduler is restarting")
        if token not in self.allowed:
            raise NotFound("deployment 'd-1' not found")


def test_a_yes_is_remembered_briefly_a_no_never_and_questions_are_shared():
    async def scenario():
        scheduler = Scheduler()
        access = DeploymentAccess(scheduler.ask, remember_seconds=0.2, outage_grace_seconds=0.5)
        await asyncio.gather(*(access.check("alpha", "token-alpha", "m") for _ in range(20)))
        assert scheduler.asked == 1  # twenty calls, one question
        await access.check("alpha", "token-alpha", "m")
        assert scheduler.asked == 1
        for _ in range(2):
            with pytest.raises(NotFound, match="model 'm' is not loaded here"):
                await access.check("beta", "token-beta", "m")
        assert scheduler.asked == 3  # a refusal is asked again

        scheduler.allowed.clear()  # alpha's lease is dropped
        await asyncio.sleep(0.25)
        with pytest.raises(NotFound):
            await access.check("alpha", "token-alpha", "m")

        scheduler.allowed.add("token-alpha")
        await access.check("alpha", "token-alpha", "m")
        scheduler.up = False  # within the grace a tenant allowed before still is; others are not
        await asyncio.sleep(0.25)
        await access.check("alpha", "token-alpha", "m")
        with pytest.raises(Unavailable):
            await access.check("beta", "token-beta", "m")
        await asyncio.sleep(0.5)  # past the grace
        with pytest.raises(Unavailable):
            await access.check("alpha", "token-alpha", "m")

    asyncio.run(scenario())
