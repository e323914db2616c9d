"""A deployment's monitoring policy, free of transport (servicer.py adapts it, having checked the
caller): validated field by field against what makes sense, merged into the current one (setting
one field never resets the others), with its privacy terms stated at the scheduler and its
federation recorded."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from mlaas.errors import FailedPrecondition, InvalidArgument
from mlaas.services.privacy_terms import MAX_BUDGET, MAX_EPSILON, epsilon_problem
from mlaas.v1 import monitor_pb2
from monitor_svc.deployments import DeploymentMonitors
from monitor_svc.monitoring import MAX_FALSE_ALARMS_PER_100K, OPEN_NOT_PRIVATE, default_policy
from monitor_svc.privacy import SchedulerPrivacy
from monitor_svc.store import MonitorStore

LEAVE_FEDERATION = "-"
FEDERATION_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIN_FIRST_ROUND_LABELS = 40  # a quarter held out: 10 labels, the fewest a paired test can be sure on
MIN_TRIAL_LABELS = 10
MAX_TRIAL_LABELS = 10_000  # a running trial keeps its labels (and both answers) until it is decided


def validate_policy(
    policy: monitor_pb2.MonitorPolicy, current: monitor_pb2.MonitorPolicy | None = None
) -> monitor_pb2.MonitorPolicy:
    """`current` (the defaults if None) with the fields `policy` sets; InvalidArgument for values
    that make no sense. Setting one field never resets the others (auto_retrain included: it
    changes only when the caller sets it)."""
    merged = monitor_pb2.MonitorPolicy()
    merged.CopyFrom(current or default_policy())
    for field in (
        "window_size",
        "trial_labels",
        "min_labels",
        "first_round_labels",
        "cooldown_labels",
        "performance_expected_run_length",
    ):
        value = getattr(policy, field)
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"policy.{field} must be a finite number, not negative")
        if value:
            setattr(merged, field, value)
    if not 8 <= merged.window_size <= 4096:
        raise InvalidArgument("policy.window_size must be between 8 and 4096")
    if 0 < merged.trial_labels < MIN_TRIAL_LABELS or merged.trial_labels > MAX_TRIAL_LABELS:
        raise InvalidArgument(
            f"policy.trial_labels must be between {MIN_TRIAL_LABELS} (a paired test needs them) and {MAX_TRIAL_LABELS}"
        )
    if 0 < merged.first_round_labels < MIN_FIRST_ROUND_LABELS:
        raise InvalidArgument(
            f"policy.first_round_labels must be at least {MIN_FIRST_ROUND_LABELS}: fewer hold out too few labels to "
            "judge (set it to min_labels for no early round)"
        )
    if policy.HasField("false_alarms_per_100k"):
        rate = policy.false_alarms_per_100k
        if not (math.isfinite(rate) and 0 < rate <= MAX_FALSE_ALARMS_PER_100K):
            raise InvalidArgument(
                f"policy.false_alarms_per_100k must be above 0 and at most {MAX_FALSE_ALARMS_PER_100K:g} "
                "(each detector then expects a false alarm every 50 predictions)"
            )
        merged.false_alarms_per_100k = rate
    if policy.HasField("challenger_confidence"):
        confidence = policy.challenger_confidence
        if not (math.isfinite(confidence) and 0.5 <= confidence < 1):
            raise InvalidArgument("policy.challenger_confidence must be at least 0.5 and below 1")
        merged.challenger_confidence = confidence
    if policy.HasField("auto_retrain"):
        merged.auto_retrain = policy.auto_retrain
    if policy.HasField("shadow_retrained"):
        merged.shadow_retrained = policy.shadow_retrained
    for field, most in (("privacy_epsilon", MAX_EPSILON), ("privacy_budget", MAX_BUDGET)):
        if policy.HasField(field):
            value = getattr(policy, field)
            if problem := epsilon_problem(f"policy.{field}", value, most):
                raise InvalidArgument(problem)
            setattr(merged, field, value)
    if policy.federation:
        name = "" if policy.federation == LEAVE_FEDERATION else policy.federation
        if name and not FEDERATION_NAME.fullmatch(name):
            raise InvalidArgument("policy.federation must be 1-64 letters, digits, '.', '_' or '-' ('-' to leave)")
        merged.federation = name
    if merged.federation and merged.shadow_retrained:
        raise InvalidArgument("shadow_retrained is not for federated rounds (they roll out to every site): set one")
    if merged.federation and merged.privacy_epsilon:
        raise InvalidArgument("federated rounds with differential privacy are not supported yet: set one of them")
    if merged.privacy_epsilon and merged.privacy_budget < merged.privacy_epsilon:
        raise InvalidArgument(
            "policy.privacy_budget (the total epsilon retrainings may spend) must be at least privacy_epsilon"
        )
    return merged


class Policies:
    def __init__(
        self, store: MonitorStore, deployments: DeploymentMonitors, privacy: SchedulerPrivacy,
        is_strict: Callable[[str], bool],
    ):  # fmt: skip
        """`is_strict`: whether the scheduler's record of a deployment says STRICT."""
        self._store = store
        self._deployments = deployments
        self._privacy = privacy
        self._is_strict = is_strict

    def get(self, deployment_id: str) -> monitor_pb2.MonitorPolicy:
        return self._deployments.policy(deployment_id)

    def set(
        self, deployment_id: str, change: monitor_pb2.MonitorPolicy, tenant: str, token: str | None
    ) -> monitor_pb2.MonitorPolicy:
        """The policy with the fields `change` sets, for its owner `tenant` (`token`: the owner's,
        to state the privacy terms at the scheduler, which are its to set)."""
        before = self._deployments.policy(deployment_id)
        policy = validate_policy(change, before)
        if (policy.privacy_epsilon or policy.federation) and not self._strict(deployment_id):
            raise FailedPrecondition(OPEN_NOT_PRIVATE.format(deployment_id))
        if (policy.privacy_epsilon, policy.privacy_budget) != (before.privacy_epsilon, before.privacy_budget):
            self._privacy.state(deployment_id, policy.privacy_epsilon, policy.privacy_budget, token)
        self._store.set_federation(deployment_id, tenant, policy.federation)
        self._deployments.set_policy(deployment_id, policy)
        return policy

    def _strict(self, deployment_id: str) -> bool:
        """STRICT as its feedback showed, or, before any came, as the scheduler's record says (an
        OPEN deployment must not join a federation it would never take part in)."""
        if self._deployments.is_open(deployment_id):
            return False
        return self._deployments.shown_strict(deployment_id) or self._is_strict(deployment_id)
