"""Groups of deployment states the scheduler reasons about, in one place."""

from mlaas.v1 import scheduler_pb2

S = scheduler_pb2

# Nothing happens to these any more.
TERMINAL = frozenset({S.DEPLOYMENT_STATE_FAILED, S.DEPLOYMENT_STATE_DESTROYED})
# Replicas hold resources on their nodes.
HOLDING = frozenset(
    {
        S.DEPLOYMENT_STATE_PLACING,
        S.DEPLOYMENT_STATE_STARTING,
        S.DEPLOYMENT_STATE_READY,
        S.DEPLOYMENT_STATE_UPDATING,
        S.DEPLOYMENT_STATE_CACHED,
    }
)
# Serving (or kept warm): the reconcile loop keeps their replicas alive, and a mesh that shuts
# down keeps them for its next start.
WATCHED = (S.DEPLOYMENT_STATE_READY, S.DEPLOYMENT_STATE_CACHED)
# A new Deploy of the same version may take a lease on it instead of starting another.
SHAREABLE = frozenset(
    {
        S.DEPLOYMENT_STATE_QUEUED,
        S.DEPLOYMENT_STATE_PLACING,
        S.DEPLOYMENT_STATE_STARTING,
        S.DEPLOYMENT_STATE_READY,
        S.DEPLOYMENT_STATE_CACHED,
    }
)
