"""Placing work by requirements and load: filters, explanations, scores, and spreading."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from mcp_bridge.routing import (
    Candidate,
    NodeView,
    Requirements,
    RoutingDecision,
    choose_for_command,
    choose_node,
    light_programs,
    place_many,
    score_node,
)


def facts(**overrides: Any) -> dict[str, Any]:
    """An idle 4-CPU linux x86_64 node, as the inventory plugin reports it."""
    base: dict[str, Any] = {
        "reachable": True,
        "error": None,
        "load_1": 0.0,
        "load_5": 0.0,
        "load_15": 0.0,
        "cpus": 4,
        "mem_total_mb": 8000,
        "mem_available_mb": 6000,
        "mem_used_pct": 25.0,
        "cpu_busy_pct": 1.0,
        "disk_free_mb": 50_000,
        "os": "linux",
        "arch": "x86_64",
        "distribution": "Debian",
        "python_version": "3.11.2",
        "running_jobs": 0,
        "capabilities": [],
        "load_per_cpu": 0.0,
        "load_group": "idle",
    }
    base.update(overrides)
    if "load_1" in overrides and "load_per_cpu" not in overrides:
        base["load_per_cpu"] = base["load_1"] / base["cpus"]
    return base


def node(name: str, *, active: bool = True, tags: tuple[str, ...] = (), **fact_overrides: Any) -> NodeView:
    return NodeView(name=name, active=active, tags=tags, facts=facts(**fact_overrides))


ANY = Requirements()


# --------------------------------------------------------------------------------------
# Filters and their explanations
# --------------------------------------------------------------------------------------


def test_nothing_qualifies_names_each_reason() -> None:
    nodes = [
        node("n1", tags=("build",)),
        node("n2", tags=("gpu",), reachable=False, error="connection refused"),
        node("n3", tags=("gpu",), active=False),
    ]
    decision = choose_node(Requirements(tags=("gpu",)), nodes, {})
    assert decision.node is None
    assert decision.reason == "no node qualifies: n1 lacks tag gpu; n2 unreachable (connection refused); n3 inactive"
    assert decision.candidates == [
        Candidate("n1", None, "lacks tag gpu"),
        Candidate("n2", None, "unreachable (connection refused)"),
        Candidate("n3", None, "inactive"),
    ]


@pytest.mark.parametrize(
    ("requirements", "view", "why"),
    [
        (ANY, node("x", active=False), "inactive"),
        (ANY, node("x", reachable=False, error="timed out"), "unreachable (timed out)"),
        (ANY, node("x", reachable=False, error=None), "unreachable"),
        (ANY, NodeView("x", True, (), {"reachable": None}),
         "not probed (no live facts: the inventory has probe: false or skipped it)"),
        (Requirements(os="darwin"), node("x"), "is linux, not darwin"),
        (Requirements(os="linux"), node("x", os="darwin"), "is darwin, not linux"),
        (Requirements(os="linux"), node("x", os=None), "is of unknown OS, not linux"),
        (Requirements(arch="aarch64"), node("x"), "is x86_64, not aarch64"),
        (Requirements(arch="x86_64"), node("x", arch="arm64"), "is aarch64, not x86_64"),
        (Requirements(tags=("gpu",)), node("x", tags=("build",)), "lacks tag gpu"),
        (Requirements(tags=("gpu", "cuda", "big")), node("x", tags=("big",)), "lacks tags gpu, cuda"),
    ],
)
def test_each_exclusion_is_explained(requirements: Requirements, view: NodeView, why: str) -> None:
    decision = choose_node(requirements, [view], {})
    assert decision.node is None
    assert decision.candidates == [Candidate("x", None, why)]
    assert decision.reason == f"no node qualifies: x {why}"


def test_inactive_wins_over_other_reasons() -> None:
    decision = choose_node(Requirements(tags=("gpu",)), [node("x", active=False, reachable=False)], {})
    assert decision.candidates[0].excluded == "inactive"


def test_no_nodes_at_all() -> None:
    decision = choose_node(ANY, [], {})
    assert decision == RoutingDecision(None, "no node qualifies: no nodes are known", [])


@pytest.mark.parametrize(("wanted", "actual"), [("macos", "darwin"), ("MacOS", "Darwin"), ("darwin", "macos"),
                                                ("Linux", "linux"), ("osx", "darwin")])
def test_os_aliases_and_case(wanted: str, actual: str) -> None:
    assert choose_node(Requirements(os=wanted), [node("m", os=actual)], {}).node == "m"


@pytest.mark.parametrize(("wanted", "actual"), [("arm64", "aarch64"), ("aarch64", "arm64"), ("amd64", "x86_64"),
                                                ("x86_64", "amd64"), ("ARM64", "aarch64"), ("x86_64", "x86_64")])
def test_arch_aliases(wanted: str, actual: str) -> None:
    assert choose_node(Requirements(arch=wanted), [node("m", arch=actual)], {}).node == "m"


def test_tags_come_from_node_tags_or_capabilities() -> None:
    nodes = [node("a", tags=("gpu",)), node("b", capabilities=["docker", "gpu"]), node("c", tags=("docker",))]
    decision = choose_node(Requirements(tags=("gpu",)), nodes, {})
    assert {c.node for c in decision.candidates if c.excluded is None} == {"a", "b"}
    both = choose_node(Requirements(tags=("gpu", "docker")), nodes, {})
    assert both.node == "b"
    assert both.reason.startswith("only capable node of 3:")


def test_combined_requirements() -> None:
    nodes = [
        node("mac", os="darwin", arch="arm64", tags=("xcode",)),
        node("pi", arch="aarch64", tags=("xcode",)),
        node("box", tags=("xcode",)),
    ]
    decision = choose_node(Requirements(os="macos", arch="aarch64", tags=("xcode",)), nodes, {})
    assert decision.node == "mac"
    excluded = {c.node: c.excluded for c in decision.candidates}
    assert excluded == {"mac": None, "pi": "is linux, not darwin", "box": "is linux, not darwin"}


# --------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------


def test_node_with_a_running_job_loses_to_an_idle_one() -> None:
    nodes = [node("a-busy", running_jobs=1), node("b-idle")]
    decision = choose_node(ANY, nodes, {})
    assert decision.node == "b-idle"
    assert decision.reason == "least loaded of 2 capable nodes: load/cpu 0.00, 0 jobs, mem 25%"
    assert [c.node for c in decision.candidates] == ["b-idle", "a-busy"]


def test_score_formula() -> None:
    view = node("x", load_1=2.0, cpus=4, running_jobs=1, mem_used_pct=50.0)
    # 1.0 * 0.5 (load/cpu) + 1.0 * (1 + 1) / 4 (jobs/cpu) + 0.5 * 0.50 (memory)
    assert score_node(view, {"x": 1}) == pytest.approx(0.5 + 0.5 + 0.25)


def test_score_falls_back_to_raw_facts() -> None:
    view = NodeView("x", True, (), {"reachable": True, "load_1": 2.0, "cpus": 2,
                                    "mem_total_mb": 1000, "mem_available_mb": 250})
    assert score_node(view, {}) == pytest.approx(1.0 + 0.5 * 0.75)


@pytest.mark.parametrize(
    ("a", "b", "winner"),
    [
        ({"load_1": 2.0}, {"load_1": 0.4}, "b"),  # load
        ({"mem_used_pct": 95.0}, {"mem_used_pct": 10.0}, "b"),  # memory pressure
        ({"running_jobs": 2, "cpus": 16}, {"running_jobs": 1, "cpus": 2}, "a"),  # jobs per CPU
        ({"load_1": 1.0, "cpus": 8}, {"load_1": 1.0, "cpus": 2}, "a"),  # load per CPU, not raw load
    ],
)
def test_score_ordering(a: dict[str, Any], b: dict[str, Any], winner: str) -> None:
    assert choose_node(ANY, [node("a", **a), node("b", **b)], {}).node == winner


def test_in_flight_counts_like_running_jobs() -> None:
    nodes = [node("a"), node("b")]
    assert choose_node(ANY, nodes, {}).node == "a"  # a tie goes to the first name
    decision = choose_node(ANY, nodes, {"a": 1})
    assert decision.node == "b"
    # 1 in-flight job on 4 CPUs (0.25) plus memory 25% at half weight (0.125)
    assert decision.candidates[1] == Candidate("a", 0.375, None)
    assert "1 job," in choose_node(ANY, [node("a")], {"a": 1}).reason


def test_reason_reports_fresh_facts() -> None:
    nodes = [node("n1", load_1=0.4, mem_used_pct=21.0), node("n2", load_1=3.0), node("n3", load_1=2.0)]
    decision = choose_node(ANY, nodes, {})
    assert decision.reason == "least loaded of 3 capable nodes: load/cpu 0.10, 0 jobs, mem 21%"


def test_overloaded_nodes_are_a_last_resort() -> None:
    nodes = [node("hot", load_1=20.0, load_group="overloaded"), node("warm", load_1=3.6, load_group="busy")]
    decision = choose_node(ANY, nodes, {})
    assert decision.node == "warm"
    assert decision.reason == "only capable node of 2 (1 overloaded held back): load/cpu 0.90, 0 jobs, mem 25%"
    assert decision.candidates[1].node == "hot"
    assert decision.candidates[1].excluded == "overloaded (last resort)"

    # Even a lighter overloaded node waits while another qualifies.
    nodes = [node("hot", load_1=1.0, load_group="overloaded"), node("warm", load_1=3.6, load_group="busy")]
    assert choose_node(ANY, nodes, {}).node == "warm"


def test_overloaded_used_when_nothing_else_qualifies_and_says_so() -> None:
    nodes = [
        node("hot1", load_1=20.0, load_group="overloaded"),
        node("hot2", load_1=12.0, load_group="overloaded"),
        node("off", active=False),
    ]
    decision = choose_node(ANY, nodes, {})
    assert decision.node == "hot2"
    assert "all 2 capable nodes are overloaded" in decision.reason
    assert "last resort" in decision.reason
    assert all(c.excluded is None for c in decision.candidates if c.node.startswith("hot"))


def test_decisions_are_deterministic() -> None:
    nodes = [node(name, load_1=1.0) for name in ("n3", "n1", "n2")]
    decisions = [choose_node(ANY, nodes, {}) for _ in range(5)]
    decisions.append(choose_node(ANY, list(reversed(nodes)), {}))
    assert {d.node for d in decisions} == {"n1"}
    assert all(d == decisions[0] for d in decisions)


# --------------------------------------------------------------------------------------
# Placing many commands
# --------------------------------------------------------------------------------------


def placed(decisions: list[RoutingDecision]) -> Counter[str | None]:
    return Counter(d.node for d in decisions)


def test_equal_nodes_fill_evenly() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    decisions = place_many(ANY, 6, nodes, {})
    assert [d.node for d in decisions] == ["n1", "n2", "n3", "n1", "n2", "n3"]
    assert placed(decisions) == {"n1": 2, "n2": 2, "n3": 2}


def test_twenty_over_five() -> None:
    nodes = [node(f"n{i}") for i in range(5)]
    assert placed(place_many(ANY, 20, nodes, {})) == {f"n{i}": 4 for i in range(5)}


def test_busier_node_gets_fewer() -> None:
    nodes = [node("busy", running_jobs=2), node("idle1"), node("idle2")]
    counts = placed(place_many(ANY, 6, nodes, {}))
    assert counts["busy"] < counts["idle1"] and counts["busy"] < counts["idle2"]
    assert sum(counts.values()) == 6
    # The idle nodes catch up to the busy one's 2 jobs first; then all three share.
    assert counts == {"busy": 1, "idle1": 3, "idle2": 2}


def test_bigger_node_gets_more() -> None:
    nodes = [node("big", cpus=8), node("small", cpus=2)]
    assert placed(place_many(ANY, 10, nodes, {})) == {"big": 8, "small": 2}


def test_existing_in_flight_is_respected_and_not_mutated() -> None:
    in_flight = {"n1": 3}
    nodes = [node("n1"), node("n2")]
    counts = placed(place_many(ANY, 3, nodes, in_flight))
    assert counts == {"n2": 3}
    assert in_flight == {"n1": 3}


def test_place_many_respects_requirements_and_reports_failures() -> None:
    nodes = [node("cpu1"), node("gpu1", tags=("gpu",))]
    assert placed(place_many(Requirements(tags=("gpu",)), 3, nodes, {})) == {"gpu1": 3}
    failed = place_many(Requirements(tags=("tpu",)), 2, nodes, {})
    assert [d.node for d in failed] == [None, None]
    assert failed[0].reason == "no node qualifies: cpu1 lacks tag tpu; gpu1 lacks tag tpu"


def test_place_many_counts() -> None:
    assert place_many(ANY, 0, [node("n1")], {}) == []
    with pytest.raises(ValueError, match="0 or more"):
        place_many(ANY, -1, [node("n1")], {})


def test_place_many_is_deterministic() -> None:
    nodes = [node("c", load_1=0.5), node("a", load_1=1.0), node("b", running_jobs=1)]
    first = [d.node for d in place_many(ANY, 9, nodes, {})]
    assert first == [d.node for d in place_many(ANY, 9, list(reversed(nodes)), {})]


def _mixed_nodes(count: int) -> list[NodeView]:
    """Nodes of every kind: busy, big, overloaded, without the tag, unreachable, inactive."""
    out = []
    for i in range(count):
        kind = i % 7
        if kind == 5:
            out.append(node(f"n{i:03d}", tags=("gpu",), reachable=False, error="refused"))
        elif kind == 6:
            out.append(node(f"n{i:03d}", active=False))
        else:
            out.append(node(f"n{i:03d}", tags=("docker",) if kind != 4 else (), cpus=2 + 2 * (i % 3),
                            load_1=float(i % 5), running_jobs=i % 4,
                            load_group="overloaded" if kind == 3 else "normal"))
    return out


@pytest.mark.parametrize("requirements", [ANY, Requirements(tags=("docker",)), Requirements(tags=("tpu",))])
def test_place_many_decides_as_choose_node_would(requirements: Requirements) -> None:
    """The fast placement picks what choose_node, called again after each placement, picks."""
    nodes = _mixed_nodes(30)
    pending: dict[str, int] = {"n001": 2}
    for decision in place_many(requirements, 45, nodes, dict(pending)):
        expected = choose_node(requirements, nodes, pending)
        assert decision.node == expected.node
        if expected.node is not None:
            assert decision.reason == expected.reason
            shown = [c for c in expected.candidates if c.score is not None][:10]
            assert [c for c in decision.candidates if c.score is not None] == shown
            pending[expected.node] = pending.get(expected.node, 0) + 1


def test_place_many_when_every_capable_node_is_overloaded() -> None:
    nodes = [node("a", load_group="overloaded"), node("b", load_group="overloaded", load_1=2.0)]
    pending: dict[str, int] = {}
    for decision in place_many(ANY, 4, nodes, {}):
        expected = choose_node(ANY, nodes, pending)
        assert (decision.node, decision.reason, decision.candidates) == (expected.node, expected.reason,
                                                                          expected.candidates)
        pending[decision.node or ""] = pending.get(decision.node or "", 0) + 1


def test_place_many_work_grows_linearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: N commands over N nodes filtered and scored every node for every command (N^2 scores,
    plus an N-long candidate list per command). Now each node is filtered once and only the chosen
    node is scored again; every decision lists at most PLACEMENT_CANDIDATES (10) of each kind."""
    from mcp_bridge import routing

    calls: Counter[str] = Counter()
    for name in ("score_node", "_exclusion"):
        real = getattr(routing, name)
        monkeypatch.setattr(routing, name, lambda *a, _real=real, _name=name: (calls.update([_name]), _real(*a))[1])
    nodes = _mixed_nodes(200)
    decisions = place_many(ANY, 200, nodes, {})
    capable = sum(1 for d in decisions[:1] for c in d.candidates if c.score is not None)
    assert capable == 10
    assert calls["_exclusion"] == 200  # once per node, not once per node and command
    assert calls["score_node"] <= 200 + 200  # every capable node once, then the chosen one per command
    assert all(len(d.candidates) <= 20 for d in decisions)


# --- light commands -------------------------------------------------------------------------------

LIGHT = frozenset({"ls", "cat", "wc", "head", "echo"})


@pytest.mark.parametrize(("command", "programs"), [
    ("ls -la", ["ls"]),
    ("cat notes.txt | wc -l", ["cat", "wc"]),
    ("ls 'a b' *.py", ["ls"]),
    ("ls; make", None),
    ("cat f > g", None),
    ("echo $(make)", None),
    ("ls && make", None),
    ("ls || make", None),
    ("/usr/local/bin/ls", None),
    ("FOO=1 ls", None),
    ("echo 'unbalanced", None),
    ("ls &", None),
    ("ls |", None),
    ("ls\nmake", None),
])
def test_light_programs_only_for_plain_commands_and_pipelines(command: str, programs: list[str] | None) -> None:
    assert light_programs(command) == programs


def local_and_workers(**controller_facts: Any) -> list[NodeView]:
    controller = NodeView("controller", True, (), facts(**controller_facts), local=True)
    return [controller, node("w1", load_1=0.0), node("w2", load_1=0.5)]


def test_a_light_command_goes_to_the_local_node_and_says_why() -> None:
    nodes = local_and_workers(load_1=3.0)  # busier than both workers: by load it would not be chosen
    decision = choose_for_command("cat /etc/hostname | wc -c", Requirements(), nodes, {}, LIGHT)
    assert decision.node == "controller"
    assert "light command (cat, wc)" in decision.reason and "local connection" in decision.reason
    assert {c.node for c in decision.candidates} == {"controller", "w1", "w2"}


@pytest.mark.parametrize(("command", "requirements", "light"), [
    ("make -j8", Requirements(), LIGHT),  # not on the list
    ("ls | sort", Requirements(), LIGHT),  # one program of the pipeline is not
    ("ls -la", Requirements(tags=("gpu",)), LIGHT),  # requirements: placed as asked
    ("ls -la", Requirements(), frozenset()),  # light routing off
])
def test_everything_else_is_placed_by_load(command: str, requirements: Requirements, light: frozenset[str]) -> None:
    nodes = [*local_and_workers(load_1=3.0)[:1], node("w1", tags=("gpu",)), node("w2", tags=("gpu",), load_1=1.0)]
    decision = choose_for_command(command, requirements, nodes, {}, light)
    assert decision == choose_node(requirements, nodes, {})
    assert decision.node == "w1"


def test_a_light_command_falls_back_to_load_when_the_local_node_cannot_take_it() -> None:
    nodes = local_and_workers(reachable=False, error="probe timed out")
    decision = choose_for_command("ls -la", Requirements(), nodes, {}, LIGHT)
    assert decision.node == "w1"
    assert "light command ls, but controller unreachable (probe timed out)" in decision.reason
    without = choose_for_command("ls -la", Requirements(), nodes[1:], {}, LIGHT)
    assert without.node == "w1" and "no node on a local connection" in without.reason
