"""Deletion guards: who may veto deleting a model version (the scheduler, while it is deployed)."""

from __future__ import annotations

from typing import Protocol


class DeletionGuard(Protocol):
    def refusal(self, name: str, version: int) -> str | None:
        """Why the version must not be deleted now, or None to allow it."""


class AllowAll:
    def refusal(self, name: str, version: int) -> str | None:
        return None
