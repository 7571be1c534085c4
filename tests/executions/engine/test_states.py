"""Status transitions: one function accepts the legal ones and rejects the rest."""

from __future__ import annotations

import itertools

import pytest

from executions.engine.states import (
    _NODE_ALLOWED,
    _RUN_ALLOWED,
    NODE_IN_FLIGHT,
    NODE_TERMINAL,
    RUN_TERMINAL,
    IllegalTransition,
    check_node_transition,
    check_run_transition,
)

RUN_STATUSES = ["queued", "running", "succeeded", "partially_succeeded", "failed", "cancelled", "timed_out"]
NODE_STATUSES = ["pending", "queued", "running", "deferred", "retrying", "succeeded", "failed", "skipped", "cancelled", "timed_out"]


def test_status_sets_match_the_design() -> None:
    assert set(_RUN_ALLOWED) == set(RUN_STATUSES)
    assert set(_NODE_ALLOWED) == set(NODE_STATUSES)
    assert RUN_TERMINAL == {"succeeded", "partially_succeeded", "failed", "cancelled", "timed_out"}
    assert NODE_TERMINAL == {"succeeded", "failed", "skipped", "cancelled", "timed_out"}
    assert NODE_IN_FLIGHT.isdisjoint(NODE_TERMINAL)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("queued", "running"),
        ("running", "succeeded"),
        ("running", "partially_succeeded"),
        ("running", "failed"),
        ("running", "timed_out"),
        ("queued", "cancelled"),
        ("failed", "running"),  # resume / retry-from-failed
        ("cancelled", "running"),
    ],
)
def test_legal_run_transitions(old: str, new: str) -> None:
    assert check_run_transition(old, new) == new


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("succeeded", "running"),
        ("succeeded", "failed"),
        ("queued", "succeeded"),
        ("running", "queued"),
        ("failed", "succeeded"),
        ("bogus", "running"),
        ("running", "bogus"),
    ],
)
def test_illegal_run_transitions(old: str, new: str) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_run_transition(old, new)
    assert (info.value.kind, info.value.old, info.value.new) == ("run", old, new)
    assert f"{old} -> {new}" in str(info.value)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("pending", "queued"),
        ("pending", "skipped"),
        ("queued", "running"),
        ("queued", "queued"),  # a lost message re-sent
        ("running", "deferred"),
        ("running", "retrying"),
        ("running", "queued"),  # lease expired, re-queued
        ("deferred", "queued"),
        ("retrying", "running"),
        ("running", "timed_out"),
        ("timed_out", "queued"),
        ("failed", "pending"),
        ("skipped", "pending"),
    ],
)
def test_legal_node_transitions(old: str, new: str) -> None:
    assert check_node_transition(old, new) == new


def test_succeeded_nodes_never_change() -> None:
    for new in NODE_STATUSES:
        with pytest.raises(IllegalTransition):
            check_node_transition("succeeded", new)


def test_no_node_jumps_from_pending_to_running_or_back_from_terminal_to_running() -> None:
    with pytest.raises(IllegalTransition):
        check_node_transition("pending", "running")
    for old in NODE_TERMINAL:
        with pytest.raises(IllegalTransition):
            check_node_transition(old, "running")


def test_every_pair_is_decided_consistently() -> None:
    for old, new in itertools.product(NODE_STATUSES, NODE_STATUSES):
        allowed = new in _NODE_ALLOWED[old]
        try:
            check_node_transition(old, new)
        except IllegalTransition:
            assert not allowed
        else:
            assert allowed
