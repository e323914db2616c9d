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
        self._before_trial: str | None = None  # the served version's own, while a trial's speaks for it

    @property
    def current(self) -> str | None:
        """The credential of the version served now (fetches of the registry use it)."""
        return self._by_version[self._latest]

    def for_version(self, version: int) -> str | None:
        """The credential that may speak for `version`; the current one for any other."""
        return self._by_version.get(version, self.current)

    def add(self, version: int, token: str) -> None:
        """The credential of a version the runtime is about to serve."""
        self._by_version[version] = token
        self._latest = version

    def start_trial(self, served: int, challenger: int, token: str) -> None:
        """A trial's credential, which names the served version and the challenger: it speaks for
        both while the trial runs."""
        self._before_trial = self._by_version.get(served)
        self._by_version[served] = self._by_version[challenger] = token

    def end_trial(self, served: int, challenger: int, fresh: str = "") -> None:
        """Back to the served version's own credential (`fresh` if the scheduler sent one, else
        the one it had before): the challenger's is gone with its trial."""
        self._by_version.pop(challenger, None)
        if fresh or self._before_trial is not None:
            self._by_version[served] = fresh or self._before_trial
        self._before_trial = None

    def renew(self, token: str) -> None:
        """A fresh credential for what is served now (during a trial, for both versions): the
        scheduler renews it before the one held expires. Older versions' keep theirs, which
        expire with what they still have to report."""
        current = self.current
        for version, held in self._by_version.items():
            if held == current:
                self._by_version[version] = token
