"""Issue 15's fixes, before and after, in one process: ``python -m bench.before_after [COMMIT]``.

Loads mcp_bridge/routing.py and mcp_bridge/call.py as they were at COMMIT (default: where branch
`scale` left main) next to today's, and times both at N = 10, 100, 1000 (best of 3; one run at 1000
for the old placement, which takes seconds). Prints Markdown rows and the growth per 10x N.
"""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import mcp_bridge  # noqa: F401  (the collection loader, which routing imports through)
from bench import simulated
from bench.common import REPO_ROOT
from mcp_bridge import call, routing

BRANCH_POINT = "39ec4e3"


def _old(module: str, commit: str, folder: Path) -> ModuleType:
    text = subprocess.run(["git", "show", f"{commit}:mcp_bridge/{module}.py"], cwd=REPO_ROOT, check=True,
                          capture_output=True, text=True).stdout
    path = folder / f"old_{module}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"old_{module}", path)
    assert spec and spec.loader
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # dataclasses look their module up while the class is made
    spec.loader.exec_module(loaded)
    return loaded


def _best_ms(action: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _place(mod: ModuleType, count: int) -> Callable[[], Any]:
    views = [mod.NodeView(v.name, v.active, v.tags, v.facts) for v in simulated.node_views(count)]
    requirements = mod.Requirements(os="linux", tags=("docker",))
    return lambda: mod.place_many(requirements, count, views, {})


def _finish(mod: ModuleType, count: int) -> Callable[[], Any]:
    def action() -> None:
        runs = [mod.NodeRun(f"node{i}", "r") for i in range(count)]
        tracked = mod.Call()
        tracked.started(runs, lambda _runs: None)
        tracked.finished(runs[::-1])
    return action


def main(argv: list[str]) -> int:
    commit = argv[0] if argv else BRANCH_POINT
    with tempfile.TemporaryDirectory() as tmp:
        old_routing, old_call = _old("routing", commit, Path(tmp)), _old("call", commit, Path(tmp))
        pieces = {"routing.place_many, N commands over N nodes": (old_routing, routing, _place),
                  "Call.finished, N runs": (old_call, call, _finish)}
        print(f"| piece | N | before ({commit}) ms | after ms |\n|---|---:|---:|---:|")
        for name, (before, after, make) in pieces.items():
            growth: dict[str, list[float]] = {"before": [], "after": []}
            for count in (10, 100, 1000):
                old_ms = _best_ms(make(before, count), 1 if count >= 1000 else 3)
                new_ms = _best_ms(make(after, count), 3)
                growth["before"].append(old_ms)
                growth["after"].append(new_ms)
                print(f"| {name} | {count} | {old_ms:.2f} | {new_ms:.2f} |")
            for label, values in growth.items():
                steps = " then ".join(f"x{b / a:.0f}" for a, b in itertools.pairwise(values))
                print(f"| {name}: growth per 10x N, {label} | | {steps} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
