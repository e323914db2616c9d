"""When a deployment retrains (RetrainSchedule), in label counts: a series per change, an early
first round, follow-ups on more labels, retries on the latest labels, its last round and the
quiet after it."""

from __future__ import annotations

from mlaas.v1 import monitor_pb2 as M
from monitor_svc.monitoring import default_policy
from monitor_svc.retraining import RetrainSchedule, Round


def test_a_series_retrains_on_more_labels_after_a_win_until_its_last_round():
    schedule = RetrainSchedule(min_labels=100, quiet_labels=300, growth=2.0, max_rounds=5)
    assert schedule.on_alarm(1_000, 1_050)
    assert not schedule.on_alarm(1_040, 1_060)  # one series at a time
    assert schedule.due(1_099) is None and schedule.due(1_100) == Round(1_000, 1_000, follow_up=False)
    assert schedule.due(1_500) is None  # a round is running
    schedule.finished(True, 1_120)  # it won: next on twice the labels since the same change
    # the new version learnt from the labels up to 1,100: only later ones may judge it
    assert schedule.due(1_199) is None and schedule.due(1_200) == Round(1_000, 1_100, follow_up=True)
    schedule.finished(True, 1_210)
    assert schedule.due(1_400) == Round(1_000, 1_200, follow_up=True)
    # it lost after wins: the served version stays, and the next round still comes on twice the
    # labels, judged on those the served version never saw
    schedule.finished(False, 1_420)
    assert schedule.due(1_799) is None and schedule.due(1_800) == Round(1_000, 1_200, follow_up=True)
    schedule.finished(False, 1_820)
    assert schedule.due(2_600) == Round(1_000, 1_200, follow_up=True)
    schedule.finished(True, 2_610)  # the fifth round was the last: quiet for 300 labels
    assert schedule.due(50_000) is None and schedule.change_start is None
    assert not schedule.on_alarm(2_700, 2_909) and schedule.on_alarm(2_700, 2_910)


def test_until_a_round_wins_it_is_tried_again_on_the_latest_labels():
    schedule = RetrainSchedule(min_labels=100, quiet_labels=300, max_rounds=3, growth=2.0)
    schedule.on_alarm(0, 10)
    assert schedule.due(100) == Round(0, 0, follow_up=False)
    schedule.finished(False, 100)
    # 100 labels later, on the latest 100 (a gradual change was still moving)
    assert schedule.due(199) is None and schedule.due(200) == Round(100, 0, follow_up=False)
    schedule.finished(True, 200)  # a win: the next round is a follow-up on twice the labels
    assert schedule.due(299) is None and schedule.due(300) == Round(100, 200, follow_up=True)
    schedule.finished(True, 300)  # the third round was the last
    assert schedule.due(10_000) is None and schedule.change_start is None


def test_an_early_first_round_that_loses_is_followed_by_the_usual_one_on_the_same_change():
    schedule = RetrainSchedule(min_labels=500, quiet_labels=300, first_labels=200, growth=2.0)
    assert schedule.on_alarm(1_000, 1_010)
    assert schedule.due(1_199) is None and schedule.due(1_200) == Round(1_000, 1_000, follow_up=False)
    schedule.finished(False, 1_200)  # not convinced on its few labels
    assert schedule.due(1_499) is None and schedule.due(1_500) == Round(1_000, 1_000, follow_up=False)
    schedule.finished(True, 1_500)  # then the series goes on as ever: twice the labels
    assert schedule.due(1_999) is None and schedule.due(2_000) == Round(1_000, 1_500, follow_up=True)
    assert schedule.rounds == 2  # the early round that lost does not count against max_rounds


def test_an_alarm_that_comes_late_has_no_early_round():
    schedule = RetrainSchedule(min_labels=500, first_labels=200)
    schedule.on_alarm(1_000, 1_600)  # the change it dates is 600 labels back
    assert schedule.due(1_600) == Round(1_000, 1_000, follow_up=False)
    schedule.finished(False, 1_600)  # a usual round's loss: tried again 500 labels later, on the latest
    assert schedule.due(2_099) is None and schedule.due(2_100) == Round(1_600, 1_000, follow_up=False)


def test_an_early_first_round_that_wins_is_followed_as_a_series_without_it():
    schedule = RetrainSchedule(min_labels=500, first_labels=200, growth=2.0)
    schedule.on_alarm(0, 10)
    assert schedule.due(200) == Round(0, 0, follow_up=False)
    schedule.finished(True, 200)
    assert schedule.due(499) is None and schedule.due(500) == Round(0, 200, follow_up=True)
    schedule.finished(True, 500)
    assert schedule.due(999) is None and schedule.due(1_000) == Round(0, 500, follow_up=True)


def test_private_and_federated_series_have_no_early_round():
    policy = default_policy()
    assert RetrainSchedule.for_policy(policy).first_labels == 200
    for field, value in (("privacy_epsilon", 1.0), ("federation", "sites")):
        private = M.MonitorPolicy()
        private.CopyFrom(policy)
        setattr(private, field, value)
        schedule = RetrainSchedule.for_policy(private)
        schedule.on_alarm(0, 0)
        assert schedule.due(499) is None and schedule.due(500) is not None


def test_a_series_stops_after_its_last_round():
    schedule = RetrainSchedule(min_labels=10, max_rounds=3)
    schedule.on_alarm(0, 0)
    for size in (10, 20, 40):
        assert schedule.due(size).since == 0
        schedule.finished(True, size)
    assert schedule.due(10_000) is None and schedule.change_start is None


def test_the_default_series_grows_by_half_so_what_serves_learnt_from_most_labels_there_are():
    """Rounds on 1.5 times the labels of the last win (not twice): offline, with rounds served
    200 rows late as live at 100 requests/s, the 2nd 1,000 rows after a change rose on SEA,
    Agrawal and Hyperplane (bench/results/retraining-schedule.json)."""
    schedule = RetrainSchedule.for_policy(default_policy())
    schedule.on_alarm(0, 10)
    sizes = []
    while schedule.change_start is not None:
        assert schedule.due(schedule.size - 1) is None and schedule.due(schedule.size) is not None
        sizes.append(schedule.size)
        schedule.finished(True, schedule.size)
    assert sizes == [200, 500, 750, 1_125, 1_688, 2_532, 3_798, 5_697]
