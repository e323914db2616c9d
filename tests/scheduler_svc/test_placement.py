"""The placement function: pure, so tested on plain values."""

from __future__ import annotations

import numpy as np

from scheduler_svc.placement import Node, choose, first_fit, place

GI = 2**30


def nodes():
    return [
        Node("big", (8000, 32 * GI, 0)),
        Node("small", (2000, 4 * GI, 0)),
        Node("gpu", (4000, 16 * GI, 1)),
        Node("busy", (4000, 8 * GI, 0), allocated=(3500, 7 * GI, 0)),
    ]


def test_open_prefers_the_tightest_fit():
    assert place((1000, 2 * GI, 0), 1, nodes()).nodes == ("small",)


def test_open_spreads_replicas_before_stacking():
    placement = place((500, 1 * GI, 0), 3, nodes())
    assert len(set(placement.nodes)) == 3
    stacked = place((500, 1 * GI, 0), 5, nodes()[:2])
    assert sorted(stacked.nodes).count("big") >= 2 and "small" in stacked.nodes


def test_gpus_go_only_where_there_are_gpus():
    assert place((1000, 2 * GI, 1), 1, nodes()).nodes == ("gpu",)
    refused = place((1000, 2 * GI, 2), 1, nodes())
    assert not refused.placed and "no node fits" in refused.reason


def test_strict_never_lands_elsewhere():
    assert place((1000, 1 * GI, 0), 2, nodes(), strict_node="small").nodes == ("small", "small")
    full = place((1000, 1 * GI, 0), 1, nodes(), strict_node="busy")
    assert not full.placed
    assert (
        full.reason == "node 'busy' has cpu 500m, memory 1Gi, gpus 0 free; 1 replica(s) need cpu 1, memory 1Gi, gpus 0"
    )
    assert place((1, 1, 0), 1, nodes(), strict_node="nowhere").reason == "node 'nowhere' does not exist"


def test_does_not_modify_its_inputs_and_first_fit_baseline():
    allocatable = np.array([[1000, 10, 0], [4000, 40, 0]], dtype=float)
    free = allocatable.copy()
    assert list(choose(free, allocatable, np.array([900.0, 9, 0]), 2)) == [0, 1]
    assert np.array_equal(free, allocatable)
    assert choose(free, allocatable, np.array([5000.0, 1, 0]), 1) is None
    assert first_fit(free, np.array([2000.0, 1, 0])) == 1
