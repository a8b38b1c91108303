"""Bench row: a command through an execution node beside the same command direct (issue 15).

Its own small lab (`bench-exec`: node1, and hidden1 on a network only node1 reaches), bootstrapped
like tests/test_exec_node.py: node1 becomes an execution node, hidden1 is registered with
`execution_node: node1`. Rows, each `offload_to true` end to end in one MCP session:

- direct: on node1 itself (one ssh hop from the controller);
- through a bastion: on hidden1 registered with `via: node1` instead (Ansible here, ssh -W there);
- through the execution node: on hidden1 as registered (transmit, ssh + ansible-runner worker and
  a cold Ansible on node1, process).

Standalone: `flock /tmp/jexida-lab.lock .venv/bin/python -m bench.case_exec_node [--runs N]`
writes bench/results/<date>-<host>-exec-node.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import anyio
import yaml

import jexida_lab as lab

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXEC_LAB = "bench-exec"


class _Report(Protocol):
    notes: list[str]

    def add(self, case: str, what: str, samples: list[float], note: str = "") -> Any: ...
    def ratio(self, label: str, numerator: Any, denominator: Any, target: str = "") -> None: ...


async def _offload_times(config: Path, node: str, runs: int) -> list[float]:
    """`offload_to true` on ``node``: one warm-up, then ``runs`` timed calls, in ONE MCP session."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=str(BIN / "jexida"), args=["serve", "--inventory", str(config)])
    samples: list[float] = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("list_worker_nodes", {})
        await anyio.sleep(2)  # let the warm Ansible finish importing, as in a long session
        for index in range(runs + 1):
            started = time.perf_counter()
            result = await session.call_tool("offload_to", {"command": "true", "node_id": node})
            elapsed = time.perf_counter() - started
            if result.is_error or (result.structured_content or {}).get("status") != "succeeded":
                raise RuntimeError(f"offload_to on {node} failed: {result.content}")
            if index:
                samples.append(elapsed)
    return samples


def _config(work: Path, registry: Path, name: str, changes: dict[str, dict[str, Any]]) -> Path:
    document = yaml.safe_load(registry.read_text())
    for entry in document["nodes"]:
        for key, value in changes.get(entry["name"], {}).items():
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = value
    variant = work / f"{name}.yml"
    variant.write_text(yaml.safe_dump(document))
    config = work / f"{name}.jexida.yml"
    config.write_text(yaml.safe_dump({"plugin": "jexida.cluster.jexida", "nodes_file": str(variant),
                                      "connect_timeout": 3,
                                      "thresholds": {"overloaded_mem_pct": 99, "overloaded_load_per_cpu": 1000,
                                                     "busy_load_per_cpu": 500, "idle_load_per_cpu": 400}}))
    return config


def case_exec_node(report: _Report, runs: int, keep_lab: bool = False) -> None:
    print("case X: a command through an execution node beside the same command direct", flush=True)
    status = lab.up(EXEC_LAB, nodes=1, hidden=1)
    try:
        runner, hidden = status.nodes
        work = Path(tempfile.mkdtemp(prefix="bench-exec-"))
        inventory = yaml.safe_load(Path(status.inventory).read_text())
        hosts = inventory["all"]["children"][f"lab_{EXEC_LAB.replace('-', '_')}"]["hosts"]
        hosts[runner.name]["jexida_worker_execution_node"] = True
        hosts[hidden.name]["jexida_execution_node"] = runner.name
        (work / "inventory.yml").write_text(yaml.safe_dump(inventory))
        registry = work / "nodes.yml"
        subprocess.run(["ansible-playbook", "-i", str(work / "inventory.yml"), "playbooks/bootstrap.yml",
                        "-e", f"jexida_registry={registry}"], cwd=REPO_ROOT, check=True, capture_output=True)
        through = _config(work, registry, "exec", {})
        bastion = _config(work, registry, "via", {hidden.name: {"execution_node": None, "via": runner.name}})
        direct = report.add("X", "offload_to true, direct (the execution node itself)",
                            anyio.run(_offload_times, through, runner.name, runs))
        hop = report.add("X", "offload_to true, behind a bastion (via, Ansible here)",
                         anyio.run(_offload_times, bastion, hidden.name, runs))
        streamed = report.add("X", "offload_to true, through the execution node (ansible-runner worker)",
                              anyio.run(_offload_times, through, hidden.name, runs))
        report.ratio("execution node / direct", streamed, direct)
        report.ratio("execution node / bastion", streamed, hop)
        report.notes.append("Execution-node rows: a cold `ansible-runner worker` and a cold Ansible on the execution "
                            "node per call (no warm server there yet), plus the transmit/process zip both ways.")
    finally:
        if not keep_lab:
            lab.down(EXEC_LAB)


class _Rows:
    """A stand-in for bench's Report when this case runs alone."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.notes: list[str] = []

    def add(self, case: str, what: str, samples: list[float], note: str = "") -> list[float]:
        median = statistics.median(samples)
        line = (f"| {case} | {what} | {median * 1000:.1f} | {min(samples) * 1000:.1f} | {max(samples) * 1000:.1f} "
                f"| {len(samples)} |")
        print(line, flush=True)
        self.lines.append(line)
        return samples

    def ratio(self, label: str, numerator: list[float], denominator: list[float], target: str = "") -> None:
        line = f"| ratio {label} | | {statistics.median(numerator) / statistics.median(denominator):.2f} | | | |"
        print(line, flush=True)
        self.lines.append(line)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.case_exec_node", description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--keep-lab", action="store_true")
    args = parser.parse_args()
    rows = _Rows()
    case_exec_node(rows, args.runs, keep_lab=args.keep_lab)
    out = REPO_ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-{platform.node()}-exec-node.md"
    out.write_text("\n".join([f"# Execution node row, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
                              f"{args.runs} runs after one warm-up, times in ms.", "",
                              "| case | what | median | min | max | runs |", "|---|---|---:|---:|---:|---:|",
                              *rows.lines, "", *[f"- {note}" for note in rows.notes]]) + "\n")
    print(f"results in {out.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
