"""Shared fixtures: a private JEXIDA_HOME and a session-scoped lab of real nodes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Tests never touch the person's own state folder.
os.environ["JEXIDA_HOME"] = str(REPO_ROOT / ".cache" / "pytest-home")
# The tools the tests call (ansible, ansible-galaxy, jexida) are the venv's.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

from mcp_bridge import lab  # noqa: E402  (needs JEXIDA_HOME set first)

TEST_LAB = "pytest"


@pytest.fixture(scope="session")
def test_lab() -> Iterator[lab.LabStatus]:
    """Three fresh nodes, shared by the integration tests that do not change them."""
    status = lab.up(TEST_LAB, nodes=3)
    yield status
    lab.down(TEST_LAB)


def ssh_argv(status: lab.LabStatus, node: lab.LabNode, user: str = "root",
             key: str | None = None) -> list[str]:
    return [
        "ssh", "-i", key or status.admin_key,
        "-o", f"UserKnownHostsFile={status.known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        "-p", str(node.port),
        f"{user}@{node.address}",
    ]


def ssh_run(status: lab.LabStatus, node: lab.LabNode, command: str, user: str = "root",
            key: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command on a node over real SSH, as a person would."""
    return subprocess.run(
        [*ssh_argv(status, node, user, key), command],
        capture_output=True, text=True, timeout=60, check=False,
    )
