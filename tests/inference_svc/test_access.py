"""The runtime's deployment access (inference_svc/access.py) as a unit, with the scheduler's
answer given by the test: the first call waits for the answer, later ones go straight through
and a stale yes is checked again in the background (a no then refuses the calls after it);
concurrent calls share one question; a no is remembered briefly; a scheduler outage does not
stop tenants it allowed recently, and lets nobody else in. (The whole path on real servers:
tests/security/test_runtimes.py.)"""

from __future__ import annotations

import asyncio

import pytest

from inference_svc.access import DeploymentAccess
from mlaas.errors import DeadlineExceeded, NotFound, Unavailable


class Scheduler:
    def __init__(self):
        self.allowed: set[str | None] = {"token-alpha"}
        self.down: Exception | None = None
        self.asked = 0

    async def ask(self, token: str | None) -> None:
        self.asked += 1
        await asyncio.sleep(0)  # an answer takes a turn of the loop
        if self.down is not None:
            raise self.down
        if token not in self.allowed:
            raise NotFound("deployment 'd-1' not found")


class Clock:
    """The access's time, moved by the test: a busy machine's late wake-ups decide nothing."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        """Time passes; the questions asked in the background meanwhile are answered."""
        self.now += seconds
        for _ in range(5):
            await asyncio.sleep(0)


def test_answers_are_shared_remembered_and_checked_again_off_the_callers_path():
    async def scenario():
        scheduler, clock = Scheduler(), Clock()
        access = DeploymentAccess(
            scheduler.ask, remember_seconds=0.2, outage_grace_seconds=0.6, refusal_seconds=0.1, clock=clock
        )
        await asyncio.gather(*(access.check("alpha", "token-alpha", "m") for _ in range(20)))
        assert scheduler.asked == 1  # twenty calls, one question
        await access.check("alpha", "token-alpha", "m")
        assert scheduler.asked == 1
        for _ in range(3):
            with pytest.raises(NotFound, match="model 'm' is not loaded here"):
                await access.check("beta", "token-beta", "m")
        assert scheduler.asked == 2  # a no is remembered a little while
        await clock.advance(0.15)
        with pytest.raises(NotFound):
            await access.check("beta", "token-beta", "m")
        assert scheduler.asked == 3

        scheduler.allowed.clear()  # alpha's lease is dropped
        await clock.advance(0.25)
        await access.check("alpha", "token-alpha", "m")  # a stale yes: through, and asked again
        await clock.advance(0.05)
        with pytest.raises(NotFound):
            await access.check("alpha", "token-alpha", "m")

        scheduler.allowed.add("token-alpha")
        await clock.advance(0.15)
        await access.check("alpha", "token-alpha", "m")
        for outage in (Unavailable("restarting"), DeadlineExceeded("stopped")):
            scheduler.down = outage  # within the grace a tenant allowed before still is; others are not
            await clock.advance(0.25)
            await access.check("alpha", "token-alpha", "m")
            await clock.advance(0.05)
            await access.check("alpha", "token-alpha", "m")
            with pytest.raises(type(outage)):
                await access.check("gamma", "token-gamma", "m")
        await clock.advance(0.7)  # past the grace: the stale yes is not enough any more
        with pytest.raises(DeadlineExceeded):
            await access.check("alpha", "token-alpha", "m")

    asyncio.run(scenario())
