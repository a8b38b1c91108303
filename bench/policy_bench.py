"""Time per command of the command policy over its test table.

``python -m bench.policy_bench`` prints the median and maximum microseconds one
``CommandPolicy.check`` takes, over every row of ``tests/policy_table.py`` (each command timed
``repeat`` times after a warm-up pass; its fastest run counts, which filters scheduler noise).
Wall time is for people; the tests measure work with the policy's step counter instead.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from mcp_bridge.policy import CommandPolicy, analysis_steps

TABLE_PATH = Path(__file__).resolve().parent.parent / "tests" / "policy_table.py"


def _table_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("policy_table", TABLE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def policy_table_timing(repeat: int = 5) -> dict[str, Any]:
    """Median and max microseconds per command over the policy table, and the slowest commands."""
    table = _table_module().TABLE
    policy = CommandPolicy()
    commands = [row[1] for row in table]
    for command in commands:  # warm-up: imports, regex caches
        policy.check(command)
    timings: list[tuple[float, str]] = []
    for command in commands:
        best = min(_once(policy, command) for _ in range(repeat))
        timings.append((best * 1e6, command))
    micros = [t for t, _ in timings]
    slowest = sorted(timings, reverse=True)[:3]
    return {
        "commands": len(commands),
        "repeat": repeat,
        "median_us": round(statistics.median(micros), 1),
        "max_us": round(max(micros), 1),
        "mean_us": round(statistics.fmean(micros), 1),
        "slowest": [{"us": round(t, 1), "command": c[:80], "steps": analysis_steps(c)} for t, c in slowest],
    }


def _once(policy: CommandPolicy, command: str) -> float:
    start = time.perf_counter()
    policy.check(command)
    return time.perf_counter() - start


if __name__ == "__main__":
    print(json.dumps(policy_table_timing(), indent=2))
