"""Which identities may call each rpc of the mesh: the first check, made by the auth interceptor
before any servicer runs. Anything not listed here is refused, so a new rpc without a rule
cannot be called (and tests/security/test_roles.py fails until it has one).

TENANT means any tenant; the servicer then decides what of the tenant's world it may touch
(its own models and deployments, those it holds a lease on, public models). The mesh's roles
are listed by name (see mlaas.services.auth); a role missing from a rule gets PERMISSION_DENIED.
"""

from __future__ import annotations

from mlaas.services.auth import MONITOR, REGISTRY, RUNTIME, SCHEDULER, TRAINER, Identity

TENANT = "tenant"

_REGISTRY = "/mlaas.v1.RegistryService/"
_SCHEDULER = "/mlaas.v1.SchedulerService/"
_MONITOR = "/mlaas.v1.MonitorService/"
_INFERENCE = "/inference.GRPCInferenceService/"
_NODE_LABELS = "/mlaas.v1.NodeLabelsService/"
_RUNTIME = "/mlaas.v1.RuntimeService/"

RULES: dict[str, frozenset[str]] = {
    method: frozenset(who)
    for method, who in {
        # The monitor registers retrained versions of existing models for their owners, moves
        # their alias and reads what it monitors; runtimes and jobs read their one version.
        _REGISTRY + "RegisterModel": {TENANT, MONITOR},
        _REGISTRY + "FindModels": {TENANT},
        _REGISTRY + "GetModel": {TENANT, MONITOR, RUNTIME, TRAINER},
        _REGISTRY + "ListModels": {TENANT},
        _REGISTRY + "SetAlias": {TENANT, MONITOR},
        _REGISTRY + "DeleteModelVersion": {TENANT},
        _REGISTRY + "DownloadArtifact": {TENANT, MONITOR, RUNTIME, TRAINER},
        # The registry asks before deleting a deployed version, and whether a minted credential's
        # deployment or job still lives; the monitor rolls retrained versions out and runs their
        # training jobs.
        _SCHEDULER + "Deploy": {TENANT},
        _SCHEDULER + "GetDeployment": {TENANT, MONITOR, REGISTRY},
        _SCHEDULER + "ListDeployments": {TENANT, REGISTRY},
        _SCHEDULER + "WatchDeployment": {TENANT},
        _SCHEDULER + "Decommission": {TENANT},
        _SCHEDULER + "ListNodes": {TENANT},
        _SCHEDULER + "Scale": {TENANT},
        _SCHEDULER + "UpdateDeployment": {TENANT, MONITOR},
        _SCHEDULER + "ActivateDeployment": {TENANT},
        _SCHEDULER + "RunTrainingJob": {TENANT, MONITOR},
        _SCHEDULER + "GetTrainingJob": {TENANT, MONITOR, REGISTRY},
        _SCHEDULER + "CancelTrainingJob": {TENANT, MONITOR},
        _SCHEDULER + "ReadTrainingJobOutput": {TENANT, MONITOR},
        _SCHEDULER + "DeleteTrainingJob": {TENANT, MONITOR},
        # Runtimes feed their own deployment's monitoring; nobody else does.
        _MONITOR + "IngestFeedback": {RUNTIME},
        _MONITOR + "ReportLabels": {TENANT, MONITOR},
        _MONITOR + "ReportLabelBatch": {TENANT, MONITOR},
        _MONITOR + "GetDriftReport": {TENANT, MONITOR},
        _MONITOR + "ListDriftEvents": {TENANT, MONITOR},
        _MONITOR + "WatchDrift": {TENANT, MONITOR},
        _MONITOR + "SetPolicy": {TENANT},
        _MONITOR + "GetPolicy": {TENANT, MONITOR},
        _MONITOR + "ListRetrainings": {TENANT, MONITOR},
        _MONITOR + "WatchRetraining": {TENANT, MONITOR},
        # A runtime: tenants that may use its deployment (inference_svc/access.py); the scheduler
        # manages its repository (tenants only on a standalone runtime).
        _INFERENCE + "ServerLive": {TENANT, SCHEDULER},
        _INFERENCE + "ServerReady": {TENANT, SCHEDULER},
        _INFERENCE + "ServerMetadata": {TENANT, SCHEDULER},
        _INFERENCE + "ModelReady": {TENANT, SCHEDULER},
        _INFERENCE + "ModelMetadata": {TENANT},
        _INFERENCE + "ModelInfer": {TENANT},
        _INFERENCE + "ModelStreamInfer": {TENANT},
        _INFERENCE + "ModelConfig": {TENANT},
        _INFERENCE + "ModelStatistics": {TENANT},
        _INFERENCE + "RepositoryIndex": {TENANT, SCHEDULER},
        _INFERENCE + "RepositoryModelLoad": {TENANT, SCHEDULER},
        _INFERENCE + "RepositoryModelUnload": {TENANT, SCHEDULER},
        # A STRICT deployment's labels, to its runtimes on its node: tenants that may use it.
        _NODE_LABELS + "ReportNodeLabels": {TENANT},
        # A replica's load, for the scheduler's autoscaler (the operator's on a standalone runtime).
        _RUNTIME + "GetLoad": {TENANT, SCHEDULER},
    }.items()
}
# Reflection lists services and their schemas, nothing of any tenant's.
OPEN_TO_EVERY_IDENTITY = ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")


def refusal(method: str, identity: Identity) -> str | None:
    """Why `identity` may not call `method` (PERMISSION_DENIED), or None."""
    if method.startswith(OPEN_TO_EVERY_IDENTITY):
        return None
    allowed = RULES.get(method)
    if allowed is None:
        return f"{method} has no access rule; nobody may call it"
    who = identity.role or TENANT
    if who in allowed:
        return None
    if who == TENANT:
        return f"{method} is for the mesh's own components"
    return f"the mesh's {identity.role} role may not call {method}"
