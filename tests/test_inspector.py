"""An outside MCP client: the MCP Inspector CLI (pinned, installed by scripts/setup.sh) against
`jexida serve` on a lab: tools with annotations, resources listed and read, a tool call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, WorkerLab
from mcp_client import bridge_env

pytestmark = pytest.mark.integration
INSPECTOR = REPO_ROOT / ".cache" / "npm" / "node_modules" / ".bin" / "mcp-inspector"


def inspect(config: Path, era: str, *method: str) -> dict[str, object]:
    env_of_server = bridge_env(JEXIDA_INVENTORY=str(config))
    server_env = [arg for key, value in env_of_server.items() for arg in ("-e", f"{key}={value}")]
    argv = [str(INSPECTOR), "--cli", "--protocol-era", era, "-q", *server_env,
            str(Path(sys.executable).parent / "jexida"), "serve", *method]
    # The Inspector keeps a catalog of servers in ~/.mcp-inspector unless told where.
    env = {**os.environ, "MCP_CATALOG_PATH": str(config.parent / "inspector-catalog.json")}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False, env=env)
    assert done.returncode == 0, f"{method}: rc={done.returncode} {done.stderr[-2000:]}"
    return json.loads(done.stdout)


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_the_inspector_sees_a_described_server(worker_lab: WorkerLab, lab_config: Path, era: str) -> None:
    assert INSPECTOR.exists(), "the MCP Inspector is missing: run `make setup`"
    tools = {t["name"]: t for t in inspect(lab_config, era, "--method", "tools/list")["tools"]}  # type: ignore[index]
    assert tools["cluster_bash"]["annotations"]["destructiveHint"] is True
    assert tools["cluster_status"]["annotations"]["readOnlyHint"] is True
    assert tools["offload_to"]["inputSchema"]["properties"]["node_id"]["description"]
    resources = inspect(lab_config, era, "--method", "resources/list")["resources"]
    assert "jexida://nodes" in {r["uri"] for r in resources}  # type: ignore[union-attr]
    read = inspect(lab_config, era, "--method", "resources/read", "--uri", "jexida://nodes")
    listed = json.loads(read["contents"][0]["text"])  # type: ignore[index]
    assert {n.name for n in worker_lab.nodes} <= {n["name"] for n in listed}
    node = worker_lab.nodes[0].name
    called = inspect(lab_config, era, "--method", "tools/call", "--tool-name", "offload_to",
                     "--tool-arg", "command=hostname", f"node_id={node}")
    assert called["structuredContent"]["stdout"].strip() == node  # type: ignore[index]
