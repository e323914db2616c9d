"""A STRICT deployment's privacy terms, kept on its record (mlaas/services/privacy_terms.py):
set by its owner, checked and charged here for every round on its node, whoever asks for it,
in the same atomic update of the record."""

from __future__ import annotations

from mlaas.errors import FailedPrecondition, InvalidArgument
from mlaas.services.privacy_terms import MAX_BUDGET, MAX_EPSILON, MIN_EPSILON, budget_refusal, epsilon_problem
from mlaas.v1 import scheduler_pb2 as S


def check_terms(terms: S.PrivacyTerms) -> None:
    """InvalidArgument unless `terms` are sane: both set (budget at least epsilon), or epsilon 0."""
    for name, value, most in (
        ("privacy.epsilon", terms.epsilon, MAX_EPSILON),
        ("privacy.budget", terms.budget, MAX_BUDGET),
    ):
        if problem := epsilon_problem(name, value, most):
            raise InvalidArgument(problem)
    if terms.spent:
        raise InvalidArgument("privacy.spent is the scheduler's to count; leave it 0")
    if terms.epsilon and terms.budget < terms.epsilon:
        raise InvalidArgument("privacy.budget (the total epsilon rounds may spend) must be at least privacy.epsilon")


def set_terms(deployment: S.Deployment, terms: S.PrivacyTerms):
    """(the change that sets `terms` on a STRICT deployment, keeping what was spent; its event)."""
    check_terms(terms)
    if deployment.mode != S.PLACEMENT_MODE_STRICT:
        raise FailedPrecondition(
            f"deployment {deployment.id} is OPEN: privacy terms guard the data kept on a STRICT deployment's node"
        )

    def change(record: S.Deployment) -> None:
        record.privacy.epsilon, record.privacy.budget = terms.epsilon, terms.budget

    if not terms.epsilon:
        return change, "privacy terms lifted"
    return change, f"privacy terms: epsilon {terms.epsilon:g} a round, {terms.budget:g} in all"


def refusal(terms: S.PrivacyTerms, plan: S.NodeRound) -> str:
    """'' when the terms let the round run, else why not. A federated round's steps (the
    parameters of a fit, and the exact counts of judging any candidate the caller gives) have no
    differential privacy yet: under terms they are refused, never run uncharged."""
    if not terms.epsilon:
        return ""
    if plan.judge_candidate or plan.parameters_only:
        return (
            f"deployment {plan.deployment_id}'s privacy terms: federated rounds have no differential privacy yet, "
            "and its node's data is promised it"
        )
    if not plan.epsilon:
        return (
            f"deployment {plan.deployment_id}'s privacy terms: every round on its node fits with differential privacy"
        )
    if plan.epsilon < MIN_EPSILON:  # rounds at epsilon 1e-300 would spend nothing, however many ran
        return f"deployment {plan.deployment_id}'s privacy terms: a round spends at least epsilon {MIN_EPSILON:g}"
    if plan.epsilon > terms.epsilon * (1 + 1e-9):
        return (
            f"deployment {plan.deployment_id}'s privacy terms: a round on its node spends at most epsilon "
            f"{terms.epsilon:g}, and this one asks {plan.epsilon:g}"
        )
    return budget_refusal(terms.spent, plan.epsilon, terms.budget)


def charge(plan: S.NodeRound):
    """The change that charges the round's epsilon, or raises FailedPrecondition, checked on the
    record as the update reads it (two rounds at once cannot both take the last of a budget)."""

    def change(record: S.Deployment) -> None:
        if why := refusal(record.privacy, plan):
            raise FailedPrecondition(why)
        if record.privacy.epsilon:
            record.privacy.spent += plan.epsilon

    return change


def refund(plan: S.NodeRound):
    """The change that gives back what `charge(plan)` took, for a round that was never started."""

    def change(record: S.Deployment) -> None:
        if record.privacy.epsilon:
            record.privacy.spent = max(0.0, record.privacy.spent - plan.epsilon)

    return change
