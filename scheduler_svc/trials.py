"""A deployment's trial as UpdateDeployment changes it, free of transport: a challenger started in
shadow or as a canary beside the served version, promoted (it serves from then on) or dropped.
Each is a change to the deployment record and the detail of its event; the rollout then brings
the replicas there (rollout.py, replica_models.py)."""

from __future__ import annotations

import math
from collections.abc import Callable

from mlaas.errors import FailedPrecondition, InvalidArgument
from mlaas.v1 import scheduler_pb2

S = scheduler_pb2
Change = Callable[[scheduler_pb2.Deployment], None]


def start_trial(
    deployment: scheduler_pb2.Deployment, version: int, mode: int, canary_percent: float
) -> tuple[Change, str]:
    if mode not in (S.TRIAL_MODE_SHADOW, S.TRIAL_MODE_CANARY):
        raise InvalidArgument(f"trial_mode {mode} is neither SHADOW nor CANARY")
    if version == deployment.model.version:
        raise InvalidArgument(f"deployment {deployment.id} serves version {version}: a trial needs another one")
    if mode == S.TRIAL_MODE_CANARY and not (math.isfinite(canary_percent) and 0 < canary_percent < 100):
        raise InvalidArgument(f"canary_percent must be above 0 and below 100, not {canary_percent}")
    if mode == S.TRIAL_MODE_SHADOW and canary_percent:
        raise InvalidArgument("canary_percent is for a CANARY trial; a shadow answers every request")

    def change(d: scheduler_pb2.Deployment) -> None:
        d.trial.CopyFrom(S.Trial(version=version, mode=mode, canary_percent=canary_percent))

    how = f"a canary on {canary_percent:g}% of the requests" if mode == S.TRIAL_MODE_CANARY else "a shadow"
    return change, f"starting a trial of version {version} as {how} beside version {deployment.model.version}"


def end_trial(
    deployment: scheduler_pb2.Deployment, end: int, champion: int = 0, challenger: int = 0
) -> tuple[Change, str]:
    """`champion`, `challenger` (0: any): the trial the end is for, as its judge saw it; another
    trial running now is refused (a late verdict must not end what it never judged)."""
    if end not in (S.TRIAL_END_PROMOTE, S.TRIAL_END_ABORT):
        raise InvalidArgument(f"end_trial {end} is neither PROMOTE nor ABORT")
    trial = deployment.trial.version
    if not trial:
        raise FailedPrecondition(f"deployment {deployment.id} has no trial to end")
    if (champion and champion != deployment.model.version) or (challenger and challenger != trial):
        raise FailedPrecondition(
            f"deployment {deployment.id} tries version {trial} beside version {deployment.model.version} now, "
            f"not the trial that end is for ({challenger} beside {champion})"
        )

    def promote(d: scheduler_pb2.Deployment) -> None:
        d.model.version = trial
        d.ClearField("trial")

    def drop(d: scheduler_pb2.Deployment) -> None:
        d.ClearField("trial")

    if end == S.TRIAL_END_PROMOTE:
        return promote, f"promoting version {trial} from its trial beside version {deployment.model.version}"
    return drop, f"dropping the trial of version {trial}; version {deployment.model.version} serves alone"
