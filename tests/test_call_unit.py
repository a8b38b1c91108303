"""A call's record of its runs: what a cancel stops, and what finishing a big batch costs."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_bridge.call import Call, NodeRun


def test_finished_drops_exactly_the_finished_runs() -> None:
    call = Call()
    first = [NodeRun("a", "r1"), NodeRun("b", "r1")]
    second = [NodeRun("a", "r2"), NodeRun("a", "r2")]  # the same run twice (aliases of one node)
    call.started(first + second, lambda runs: None)
    call.finished([NodeRun("a", "r2"), NodeRun("b", "r1")])
    assert call._runs == [NodeRun("a", "r1"), NodeRun("a", "r2")]
    call.finished([NodeRun("zzz", "r9")])  # never started: nothing changes
    assert call._runs == [NodeRun("a", "r1"), NodeRun("a", "r2")]


def test_cancel_stops_what_is_still_running() -> None:
    call = Call()
    killed: list[list[NodeRun]] = []
    runs = [NodeRun(f"n{i}", "r") for i in range(5)]
    call.started(runs, killed.append)
    call.finished(runs[:3])
    assert call.cancel() == runs[3:]
    assert killed == [runs[3:]]


def test_finishing_n_runs_compares_linearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: finishing a broadcast's N runs scanned the list once per run (N^2 comparisons)."""
    compared = [0]
    real_eq = NodeRun.__eq__

    def counting_eq(self: NodeRun, other: Any) -> bool:
        compared[0] += 1
        return real_eq(self, other)

    monkeypatch.setattr(NodeRun, "__eq__", counting_eq)
    runs = [NodeRun(f"node{i:04d}", "r") for i in range(1000)]
    call = Call()
    call.started(runs, lambda _runs: None)
    call.finished(list(reversed(runs)))
    assert call._runs == []
    assert compared[0] <= 2 * len(runs)
