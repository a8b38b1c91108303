"""Timing MCP tool calls the way an agent makes them: one `jexida serve` session, many calls."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anyio

from bench.common import BIN, base_env, rss_mb, sh


def _params(config: Path, **env: str) -> Any:
    from mcp.client.stdio import StdioServerParameters

    return StdioServerParameters(command=str(BIN / "jexida"), args=["serve", "--inventory", str(config)],
                                 env=base_env(**env))


async def mcp_calls(config: Path, calls: list[tuple[str, dict[str, Any]]], runs: int,
                    **env: str) -> list[list[float]]:
    """Time each call (warm-up + runs) inside ONE MCP session, like an agent's conversation."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import stdio_client

    timings: list[list[float]] = []
    async with stdio_client(_params(config, **env)) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("list_worker_nodes", {})
        await anyio.sleep(2)  # a session lasts long: let the warm Ansible finish importing, as it would
        for name, arguments in calls:
            samples = []
            for index in range(runs + 1):
                started = time.perf_counter()
                result = await session.call_tool(name, arguments)
                elapsed = time.perf_counter() - started
                if result.is_error:
                    raise RuntimeError(f"{name} failed: {result.content}")
                if index:
                    samples.append(elapsed)
            timings.append(samples)
    return timings


async def mcp_memory(config: Path, node: str, big_command: str) -> tuple[float, float]:
    """The bridge's idle RSS and its peak growth while a job prints a lot (MB)."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import stdio_client

    async with stdio_client(_params(config)) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("cluster_status", {})
        pid = int(sh(["pgrep", "-f", f"serve --inventory {config}"]).stdout.split()[0])
        idle = rss_mb(pid)
        peak = [idle]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                peak.append(rss_mb(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = await session.call_tool("submit_job", {"command": big_command, "node_name": node, "wait_s": 120})
        await session.call_tool("job_output", {"job_id": (result.structured_content or {})["job_id"], "tail": 5})
        stop.set()
        sampler.join()
        return idle, max(peak) - idle
