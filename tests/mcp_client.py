"""A real MCP client session against `jexida serve` (stdio), for the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

PASSED_ON = ("PATH", "HOME", "LANG", "JEXIDA_HOME", "CONTAINERS_CONF", "ANSIBLE_HOME", "ANSIBLE_SSH_CONTROL_PATH_DIR",
             "ANSIBLE_REMOTE_TMP", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME")


def bridge_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in PASSED_ON}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env.update(extra)
    return env


@asynccontextmanager
async def bridge_session(inventory: Path | str, **env: str) -> AsyncIterator[ClientSession]:
    """Spawn `jexida serve --inventory ...` and yield an initialised client session."""
    params = StdioServerParameters(
        command=str(Path(sys.executable).parent / "jexida"),
        args=["serve", "--inventory", str(inventory)],
        env=bridge_env(**env),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def call(session: ClientSession | Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool and return its structured result; a tool error raises with its message.

    Both a bare ClientSession and the SDK's Client take ``call_tool(name, arguments)``."""
    result = await session.call_tool(tool, arguments)
    if result.is_error:
        raise ToolFailed(result.content[0].text if result.content else "tool error")
    assert result.structured_content is not None, f"{tool} returned no structured content"
    return result.structured_content


class ToolFailed(RuntimeError):
    pass


# Both protocol generations the SDK serves: `legacy` negotiates 2025-11-25 with `initialize`,
# `auto` discovers and speaks 2026-07-28 (the server offers it).
MODES = {"2025-11-25": "legacy", "2026-07-28": "auto"}


@asynccontextmanager
async def bridge_client(inventory: Path | str, mode: str = "auto", env: dict[str, str] | None = None,
                        **options: Any) -> AsyncIterator[Client]:
    """`jexida serve` over stdio with the SDK's Client, speaking the protocol generation `mode` picks."""
    params = StdioServerParameters(command=str(Path(sys.executable).parent / "jexida"),
                                   args=["serve", "--inventory", str(inventory)], env=bridge_env(**(env or {})))
    async with Client(params, mode=mode, **options) as client:  # type: ignore[arg-type]
        yield client


structured = call  # the name the Client-based tests use


def bridge_pids(inventory: Path | str) -> list[int]:
    """The `jexida serve --inventory INVENTORY` processes running now."""
    found = subprocess.run(["pgrep", "-f", f"serve --inventory {inventory}"], capture_output=True, text=True,
                           check=False)
    return [int(pid) for pid in found.stdout.split()]


async def submit_then_kill_bridge(inventory: Path | str, **job: Any) -> dict[str, Any]:
    """Start a tracked job (wait_s=0), then SIGKILL the bridge that started it; the submit answer."""
    submitted: dict[str, Any] = {}
    killed: list[int] = []
    failed: list[BaseException] = []
    # The session breaks with the killed server (that is the point); an error before the kill is kept.
    with contextlib.suppress(Exception):
        async with bridge_session(inventory) as session:
            try:
                submitted = await call(session, "submit_job", wait_s=0, **job)
            except Exception as exc:
                failed.append(exc)
                raise
            killed = bridge_pids(inventory)
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            await anyio.sleep(1)
    assert not failed, f"submit_job failed before the kill: {failed[0]!r}"
    assert submitted.get("status") == "running", submitted
    assert killed, "the bridge process was not found"
    assert not bridge_pids(inventory), "the bridge survived its SIGKILL"
    return submitted
