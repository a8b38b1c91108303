"""Where a command should run: a pure choice among nodes by requirements and load.

Nothing here does I/O. The caller passes each node's view (``active``, its tags, and the
``jexida_facts`` host var the inventory plugin gathered) and the jobs this bridge has
started but the facts cannot show yet; the answer says which node, why, and why not the
others.

Placement is two steps:

1. **Filter.** A node qualifies when it is active, reachable, runs the required OS
   (``macos``/``osx`` mean ``darwin``; case does not matter), has the required
   architecture (``aarch64`` = ``arm64``, ``x86_64`` = ``amd64``) and carries every
   required tag, either as a node tag or as a capability in its facts. Overloaded nodes
   (``load_group == "overloaded"``) qualify only as a last resort, when nothing else does.
2. **Score** (lower is better), from the node's fresh facts::

       score = 1.0 * load_per_cpu                      (load_1 / cpus when not given)
             + 1.0 * (running_jobs + in_flight) / cpus
             + 0.5 * mem_used_pct / 100

   Load and jobs weigh the same: a job per CPU costs as much as a load of one per CPU.
   Jobs are counted besides the load because the 1-minute load lags by tens of seconds,
   so a job that just started (or that this bridge is starting right now, ``in_flight``)
   would otherwise be invisible and the next command would pile onto the same node.
   Memory counts half: a full node is a worse place, but memory rarely limits a shell
   command the way CPU does. Ties go to the node whose name sorts first.

Light commands (``choose_for_command``): a command without requirements whose programs are
all on the light list (``ls``, ``cat``, ...; settings.LIGHT_COMMANDS or the inventory
config's ``light_commands``) runs on a node with a local connection (the controller), when
one qualifies: reading a file there costs a fork, not a trip to a worker. Everything else is
placed by load as above. The check is deliberately narrow (``light_programs``): one simple
command or a pipeline of them, each program a bare name, no other shell syntax.
"""

from __future__ import annotations

import bisect
import re
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.jexida.cluster.plugins.plugin_utils.facts import node_health

__all__ = [
    "JOBS_WEIGHT",
    "LOAD_WEIGHT",
    "MEMORY_WEIGHT",
    "PLACEMENT_CANDIDATES",
    "Candidate",
    "NodeView",
    "Requirements",
    "RoutingDecision",
    "choose_for_command",
    "choose_node",
    "light_programs",
    "place_many",
    "score_node",
]

LOAD_WEIGHT = 1.0
JOBS_WEIGHT = 1.0
MEMORY_WEIGHT = 0.5

_OS_ALIASES = {"macos": "darwin", "osx": "darwin", "mac": "darwin", "macosx": "darwin"}
_ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}


@dataclass(frozen=True)
class Requirements:
    os: str | None = None
    arch: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeView:
    name: str
    active: bool
    tags: tuple[str, ...]
    facts: Mapping[str, Any]
    local: bool = False  # on a local connection: the controller itself


@dataclass
class Candidate:
    node: str
    score: float | None  # None when the node was filtered out before scoring
    excluded: str | None  # why it cannot take the work ("lacks tag gpu"), None when it can


@dataclass
class RoutingDecision:
    node: str | None
    reason: str
    candidates: list[Candidate]


def _normal_os(value: str) -> str:
    lowered = value.strip().lower()
    return _OS_ALIASES.get(lowered, lowered)


def _normal_arch(value: str) -> str:
    lowered = value.strip().lower()
    return _ARCH_ALIASES.get(lowered, lowered)


def _number(facts: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    value = facts.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _cpus(facts: Mapping[str, Any]) -> float:
    return max(_number(facts, "cpus", 1.0), 1.0)


def _load_per_cpu(facts: Mapping[str, Any]) -> float:
    if isinstance(facts.get("load_per_cpu"), int | float):
        return _number(facts, "load_per_cpu")
    return _number(facts, "load_1") / _cpus(facts)


def _mem_used_pct(facts: Mapping[str, Any]) -> float:
    if isinstance(facts.get("mem_used_pct"), int | float):
        return _number(facts, "mem_used_pct")
    total = _number(facts, "mem_total_mb")
    if total <= 0:
        return 0.0
    return 100.0 * (1.0 - _number(facts, "mem_available_mb", total) / total)


def _jobs(node: NodeView, in_flight: Mapping[str, int]) -> int:
    return int(_number(node.facts, "running_jobs")) + int(in_flight.get(node.name, 0))


def score_node(node: NodeView, in_flight: Mapping[str, int]) -> float:
    """The node's load score (lower is better); see the module docstring for the formula."""
    facts = node.facts
    return (
        LOAD_WEIGHT * _load_per_cpu(facts)
        + JOBS_WEIGHT * _jobs(node, in_flight) / _cpus(facts)
        + MEMORY_WEIGHT * _mem_used_pct(facts) / 100.0
    )


def _exclusion(requirements: Requirements, node: NodeView) -> str | None:
    """Why the node cannot take the work at all, or None. Overload is not decided here."""
    facts = node.facts
    health = node_health(node.active, facts)
    if health == "inactive":
        return "inactive"
    if health == "unprobed":
        return "not probed (no live facts: the inventory has probe: false or skipped it)"
    if health == "unreachable":
        error = facts.get("error")
        return f"unreachable ({error})" if error else "unreachable"
    if requirements.os:
        wanted = _normal_os(requirements.os)
        actual = _normal_os(str(facts.get("os") or ""))
        if actual != wanted:
            return f"is {actual or 'of unknown OS'}, not {wanted}"
    if requirements.arch:
        wanted = _normal_arch(requirements.arch)
        actual = _normal_arch(str(facts.get("arch") or ""))
        if actual != wanted:
            return f"is {actual or 'of unknown architecture'}, not {wanted}"
    offered = {tag.casefold() for tag in node.tags} | {str(c).casefold() for c in facts.get("capabilities") or ()}
    missing = [tag for tag in requirements.tags if tag.casefold() not in offered]
    if missing:
        return f"lacks tag{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    return None


def _overloaded(node: NodeView) -> bool:
    return node_health(node.active, node.facts) == "overloaded"


def _describe(node: NodeView, in_flight: Mapping[str, int]) -> str:
    jobs = _jobs(node, in_flight)
    return (
        f"load/cpu {_load_per_cpu(node.facts):.2f}, {jobs} job{'' if jobs == 1 else 's'}, "
        f"mem {_mem_used_pct(node.facts):.0f}%"
    )


def choose_node(
    requirements: Requirements,
    nodes: Sequence[NodeView],
    in_flight: Mapping[str, int],
) -> RoutingDecision:
    """The least loaded node that meets the requirements, with the reason and every candidate."""
    return place_many(requirements, 1, nodes, in_flight, shown=max(len(nodes), 1))[0]


# How many candidates each decision of place_many lists (best first, then the excluded by name). A
# batch of C commands over N nodes listing every node in every decision would answer C x N entries:
# 1,000 commands over 1,000 nodes make a million. choose_node (one command) lists them all.
PLACEMENT_CANDIDATES = 10


def _shown(items: Sequence[str], limit: int) -> str:
    more = len(items) - limit
    return "; ".join(items[:limit]) + (f"; and {more} more" if more > 0 else "")


def place_many(
    requirements: Requirements,
    count: int,
    nodes: Sequence[NodeView],
    in_flight: Mapping[str, int],
    shown: int = PLACEMENT_CANDIDATES,
) -> list[RoutingDecision]:
    """Place ``count`` commands one after another by load, each counted before the next.

    Not round robin: each placement adds one job to its node's in-flight count, so equal
    nodes fill evenly and a node that starts busier (or has fewer CPUs) gets fewer.

    The same choice as deciding ``count`` times over with the growing in-flight counts, without
    its cost: each node is filtered once, and only the chosen node's score changes
    between placements, so the ranking is kept sorted and the chosen node re-inserted
    (O(N log N + count log N) Python steps, not O(count x N log N)). Each decision lists the
    ``shown`` best candidates at its moment and up to ``shown`` excluded nodes.
    """
    if count < 0:
        raise ValueError(f"count must be 0 or more, not {count}")
    if count == 0:
        return []
    pending = dict(in_flight)  # the caller's mapping stays untouched
    capable: list[NodeView] = []
    excluded: list[Candidate] = []
    for node in nodes:
        why_not = _exclusion(requirements, node)
        if why_not is None:
            capable.append(node)
        else:
            excluded.append(Candidate(node.name, None, why_not))
    excluded.sort(key=lambda candidate: candidate.node)
    if not capable:
        if not nodes:
            return [RoutingDecision(None, "no node qualifies: no nodes are known", []) for _ in range(count)]
        reason = "no node qualifies: " + _shown([f"{c.node} {c.excluded}" for c in excluded], max(shown, 1) * 10)
        return [RoutingDecision(None, reason, excluded[:shown]) for _ in range(count)]

    overloaded = {n.name for n in capable if _overloaded(n)}
    last_resort = len(overloaded) == len(capable)
    by_name = {n.name: n for n in capable}
    # Sort key as choose_node ranks: calm nodes before overloaded ones, then score, then name.
    ranking = sorted((n.name in overloaded, score_node(n, pending), n.name) for n in capable)
    calm_count = len(capable) - len(overloaded)
    if last_resort:
        base = (f"all {len(overloaded)} capable node{'s are' if len(overloaded) > 1 else ' is'} overloaded; "
                "using the least loaded as a last resort")
    else:
        base = f"least loaded of {calm_count} capable nodes" if calm_count > 1 else f"only capable node of {len(nodes)}"
        if overloaded:
            base += f" ({len(overloaded)} overloaded held back)"
    decisions: list[RoutingDecision] = []
    for _ in range(count):
        candidates = [Candidate(name, round(score, 4), None if last_resort or not held else "overloaded (last resort)")
                      for held, score, name in ranking[:shown]]
        held, _score, chosen_name = ranking.pop(0)
        chosen = by_name[chosen_name]
        decisions.append(RoutingDecision(chosen_name, f"{base}: {_describe(chosen, pending)}",
                                         candidates + excluded[:shown]))
        pending[chosen_name] = pending.get(chosen_name, 0) + 1
        bisect.insort(ranking, (held, score_node(chosen, pending), chosen_name))
    return decisions


# Shell syntax that makes a command more than a pipeline of plain programs: lists, redirections,
# substitutions, subshells, groups, escapes, comments, negation, background jobs, new lines.
_NOT_PLAIN = re.compile(r"[;&<>()$`\\{}#!\n\r]|\|\|")
_PROGRAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def light_programs(command: str) -> list[str] | None:
    """The programs of a simple command or a pipeline (``cat f | wc -l`` -> [cat, wc]), or None when the
    command uses any other shell syntax, a program given by path, or a variable assignment."""
    if _NOT_PLAIN.search(command):
        return None
    programs = []
    for stage in command.split("|"):
        try:
            words = shlex.split(stage)
        except ValueError:  # an unbalanced quote
            return None
        if not words or not _PROGRAM.match(words[0]):
            return None
        programs.append(words[0])
    return programs


def choose_for_command(
    command: str,
    requirements: Requirements,
    nodes: Sequence[NodeView],
    in_flight: Mapping[str, int],
    light: Collection[str] = (),
) -> RoutingDecision:
    """``choose_node``, except that a light command without requirements goes to a local-connection node."""
    by_load = choose_node(requirements, nodes, in_flight)
    programs = light_programs(command) if light and requirements == Requirements() else None
    if not programs or not all(p in light for p in programs):
        return by_load
    shown = ", ".join(dict.fromkeys(programs))
    local = [n for n in nodes if n.local]
    ready = [n for n in local if _exclusion(requirements, n) is None and not _overloaded(n)]
    if not ready:
        why = ("the inventory has no node on a local connection" if not local else
               "; ".join(f"{n.name} {_exclusion(requirements, n) or 'overloaded'}" for n in local))
        by_load.reason = f"{by_load.reason} (light command {shown}, but {why})"
        return by_load
    chosen = min(ready, key=lambda n: (score_node(n, in_flight), n.name))
    reason = (f"light command ({shown}): runs on {chosen.name}, the node on a local connection (the controller), "
              f"instead of being placed by load: {_describe(chosen, in_flight)}")
    return RoutingDecision(chosen.name, reason, by_load.candidates)
