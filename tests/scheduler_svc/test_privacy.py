"""A STRICT deployment's privacy terms in process (scheduler_svc/privacy.py): which terms an owner
may set, which rounds they let run, and the charge and refund the store applies atomically. The
rpcs and rounds on a node over these run in test_node_rounds.py."""

from __future__ import annotations

import math

import pytest

from mlaas.errors import FailedPrecondition, InvalidArgument
from mlaas.v1 import scheduler_pb2 as S
from scheduler_svc.privacy import charge, check_terms, refund, refusal, set_terms


def strict(epsilon: float = 1.0, budget: float = 3.0, spent: float = 0.0) -> S.Deployment:
    return S.Deployment(
        id="d-1", mode=S.PLACEMENT_MODE_STRICT, privacy=S.PrivacyTerms(epsilon=epsilon, budget=budget, spent=spent)
    )


def test_only_sane_terms_are_set_and_what_was_spent_stays():
    for terms, why in [
        (S.PrivacyTerms(epsilon=1e-6, budget=1), "privacy.epsilon must be 0 .off. or between 0.001 and 100"),
        (S.PrivacyTerms(epsilon=math.inf, budget=1), "privacy.epsilon must be"),
        (S.PrivacyTerms(epsilon=1, budget=math.nan), "privacy.budget must be"),
        (S.PrivacyTerms(epsilon=2, budget=1), "must be at least privacy.epsilon"),
        (S.PrivacyTerms(epsilon=1, budget=2, spent=0.5), "privacy.spent is the scheduler's to count"),
    ]:
        with pytest.raises(InvalidArgument, match=why):
            check_terms(terms)
    with pytest.raises(FailedPrecondition, match="is OPEN: privacy terms guard"):
        set_terms(S.Deployment(id="d-2", mode=S.PLACEMENT_MODE_OPEN), S.PrivacyTerms(epsilon=1, budget=2))
    record = strict(spent=2.5)
    change, said = set_terms(record, S.PrivacyTerms(epsilon=0.5, budget=10))
    change(record)
    assert (record.privacy.epsilon, record.privacy.budget, record.privacy.spent) == (0.5, 10, 2.5)
    assert said == "privacy terms: epsilon 0.5 a round, 10 in all"
    assert set_terms(record, S.PrivacyTerms())[1] == "privacy terms lifted"


def test_under_terms_every_round_on_the_node_is_private_and_within_them():
    terms = strict().privacy

    def plan(**fields) -> S.NodeRound:
        return S.NodeRound(deployment_id="d-1", confidence=0.9, **fields)

    assert refusal(S.PrivacyTerms(), plan()) == ""  # no terms: any round
    assert refusal(terms, plan(epsilon=1.0)) == "" and refusal(terms, plan(epsilon=0.25)) == ""
    assert "every round on its node fits with differential privacy" in refusal(terms, plan())
    assert "spends at least epsilon 0.001" in refusal(terms, plan(epsilon=1e-300))
    assert "spends at most epsilon 1, and this one asks 1.5" in refusal(terms, plan(epsilon=1.5))
    assert "federated rounds have no differential privacy yet" in refusal(terms, plan(parameters_only=True))
    assert "federated rounds have no differential privacy yet" in refusal(terms, plan(judge_candidate=True))


def test_a_charge_is_checked_on_the_record_it_changes_and_a_refund_gives_back_no_more():
    record = strict(spent=2.0)
    round_ = S.NodeRound(deployment_id="d-1", confidence=0.9, epsilon=1.0)
    charge(round_)(record)
    assert record.privacy.spent == 3.0
    with pytest.raises(FailedPrecondition, match="privacy budget: 3 of 3 spent, and a round spends 1"):
        charge(round_)(record)  # the second of two rounds at once, reading the record the first left
    assert record.privacy.spent == 3.0
    refund(round_)(record)
    refund(round_)(record)
    refund(round_)(record)
    refund(round_)(record)
    assert record.privacy.spent == 0.0  # never below nothing
    free = S.Deployment(id="d-3", mode=S.PLACEMENT_MODE_STRICT)
    charge(round_)(free)
    assert free.privacy.spent == 0.0  # no terms: nothing is counted
