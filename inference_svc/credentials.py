"""The credentials a deployment's runtime holds, one per model version it has served.

The scheduler mints a replica's credential for its deployment and one model version: the registry
lets it download that version only, and the Monitor takes its feedback for that version only. A hot
version swap (catalog.py) hands the runtime the credential of the new version with the load; the
old one stays for what the old version still answers and reports (its requests in flight, its
feedback not sent yet).
"""

from __future__ import annotations


class RuntimeCredentials:
    def __init__(self, token: str | None, version: int = 0):
        self._by_version: dict[int, str | None] = {version: token}
        self._latest = version

    @property
    def current(self) -> str | None:
        """The credential of the version served now (fetches of the registry use it)."""
        return self._by_version[self._latest]

    def fetching(self, version: int) -> str | None:
        """The credential to fetch `version` with: its own if the scheduler gave one."""
        return self._by_version.get(version, self.current)

    def for_version(self, version: int) -> str | None:
        """The credential that may speak for `version`; the current one for any other."""
        return self._by_version.get(version, self.current)

    def add(self, version: int, token: str, serving: bool = True) -> None:
        """The credential of a version the runtime is about to serve (or, not `serving`, to try
        beside the served one: a trial's challenger)."""
        self._by_version[version] = token
        if serving:
            self._latest = version
