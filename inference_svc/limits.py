"""Each tenant's share of a runtime worker: how many of its requests, and how many rows, may be
in flight at once. Without it one tenant's burst fills the model's queue (MLAAS_MAX_QUEUE_ROWS)
and every other tenant of a shared deployment is answered "queue is full" until it drains.

A tenant with nothing in flight is always let in, however big its request (the message size
limit bounds that), so no request is refused for being big alone. Only callers with a tenant
(under auth) are counted: without auth every caller is the same one, bounded by the queue.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from inference_svc.batcher import BatchPolicy
from mlaas.errors import ResourceExhausted
from mlaas.services.settings import setting


@dataclass(frozen=True)
class TenantShare:
    max_requests: int = setting("MLAAS_MAX_INFLIGHT_PER_TENANT", 256)
    # Half the model's queue: one tenant can never fill it for the others (settings.py halves
    # the queue configured there).
    max_rows: int = setting("MLAAS_MAX_INFLIGHT_ROWS_PER_TENANT", BatchPolicy.max_queue_rows // 2)


class TenantLimits:
    def __init__(self, share: TenantShare):
        self._share = share
        self._requests: dict[str, int] = {}
        self._rows: dict[str, int] = {}

    def take(self, tenant: str, rows: int) -> None:
        """Counts a request in; ResourceExhausted, with the limit, when the tenant's share is used."""
        if not tenant:
            return
        requests, held = self._requests.get(tenant, 0), self._rows.get(tenant, 0)
        if requests and requests >= self._share.max_requests:
            raise ResourceExhausted(
                f"{requests} of your requests are in flight on this worker, the limit per tenant "
                "(MLAAS_MAX_INFLIGHT_PER_TENANT); wait for answers before sending more"
            )
        if requests and held + rows > self._share.max_rows:
            raise ResourceExhausted(
                f"{held} rows of yours are in flight on this worker and this request adds {rows}; the "
                f"limit per tenant is {self._share.max_rows} (MLAAS_MAX_INFLIGHT_ROWS_PER_TENANT)"
            )
        self._requests[tenant] = requests + 1
        self._rows[tenant] = held + rows

    def give_back(self, tenant: str, rows: int) -> None:
        if not tenant:
            return
        left = self._requests[tenant] - 1
        if left:
            self._requests[tenant] = left
            self._rows[tenant] -= rows
        else:  # forget idle tenants: the tables stay as small as the set of active ones
            del self._requests[tenant], self._rows[tenant]

    @contextlib.contextmanager
    def held(self, tenant: str, rows: int) -> Iterator[None]:
        self.take(tenant, rows)
        try:
            yield
        finally:
            self.give_back(tenant, rows)

    def in_flight(self, tenant: str) -> tuple[int, int]:
        """(requests, rows) the tenant has in flight."""
        return self._requests.get(tenant, 0), self._rows.get(tenant, 0)
