"""What a command leaves readable on a node while it runs: nothing for other users."""

from __future__ import annotations

import functools
import secrets
from pathlib import Path

import anyio
import pytest
from conftest import WorkerLab, as_jexida
from mcp_client import bridge_client, structured

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_the_command_and_its_output_sit_in_a_private_folder(worker_lab: WorkerLab, lab_config: Path) -> None:
    node = worker_lab.nodes[2]
    marker = secrets.token_hex(6)
    command = f"echo {marker}; sleep 4"
    seen: list[str] = []

    def look() -> None:
        # The run folders of the worker user, their files, and whether anyone else could read them.
        listing = as_jexida(worker_lab, node, "for d in /tmp/jexida-$(id -u) /tmp/jexida-$(id -u)/*; do "
                                              "stat -c '%a %U %n' \"$d\"; done; "
                                              "find /tmp/jexida-$(id -u) -type f -exec stat -c '%a %n' {} +")
        seen.append(listing.stdout)

    async with bridge_client(lab_config) as client, anyio.create_task_group() as tasks:
        tasks.start_soon(functools.partial(structured, client, "offload_to", command=command, node_id=node.name))
        await anyio.sleep(2.5)
        await anyio.to_thread.run_sync(look)
    lines = [line.split() for line in seen[0].splitlines() if line.strip()]
    folders = [line for line in lines if len(line) == 3]
    files = [line for line in lines if len(line) == 2]
    assert folders and all(mode == "700" and owner == "jexida" for mode, owner, _ in folders), seen[0]
    assert any(path.endswith("/c") for _, path in files) and any(path.endswith("/o") for _, path in files)
    assert all(mode == "600" for mode, _ in files), seen[0]
