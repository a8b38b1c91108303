"""Bad input gets one clear message, the same on every face, and never a traceback.

Each case breaks one thing (a node name, the registry, the policy file, the audit log) and asks
the CLI and an MCP session for the same call. No command runs: the nodes here do not exist
(probe: false; nothing is ever sent to them), and every error comes before a run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import yaml
from mcp_client import bridge_client, bridge_env

pytestmark = pytest.mark.anyio

JEXIDA = str(Path(sys.executable).parent / "jexida")


def setup_config(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    registry = tmp_path / "nodes.yml"
    registry.write_text(yaml.safe_dump({"nodes": [{"name": "n1", "host": "127.0.0.250", "tags": ["x"]}]}))
    config = tmp_path / "errors.jexida.yml"
    config.write_text(yaml.safe_dump({"plugin": "jexida.cluster.jexida", "nodes_file": "nodes.yml", "probe": False}))
    return config, {"JEXIDA_HOME": str(tmp_path / "state")}


def break_registry(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "nodes.yml").write_text("nodes:\n  - name: n1\n    port: 99999\n")


def break_policy(tmp_path: Path, env: dict[str, str]) -> None:
    env["JEXIDA_POLICY"] = str(tmp_path / "no-such-policy.yml")


def break_audit(tmp_path: Path, env: dict[str, str]) -> None:
    state = Path(env["JEXIDA_HOME"])
    state.mkdir(parents=True, exist_ok=True)
    (state / "audit.jsonl").write_text('{"not": "an audit entry"}\n')
    (state / "audit.key").write_text(json.dumps({"key": "00" * 32}) + "\n")


CASES: dict[str, tuple[Callable[[Path, dict[str, str]], None], str, list[str]]] = {
    # name: (how to break it, node to use, words the message must have)
    "unknown node": (lambda tmp, env: None, "nope", ["unknown node 'nope'", "has: n1"]),
    "bad registry": (break_registry, "n1", ["nodes.yml", "'port' must be an integer from 1 to 65535"]),
    "unreadable policy file": (break_policy, "n1", ["no-such-policy.yml"]),
    "audit problem": (break_audit, "n1", ["audit.jsonl", "refusing to append"]),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_one_clear_message_on_each_face(tmp_path: Path, case: str) -> None:
    config, env = setup_config(tmp_path)
    breaker, node, words = CASES[case]
    breaker(tmp_path, env)
    cli = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [JEXIDA, "run", "true", "--node", node, "--inventory", str(config)], capture_output=True, text=True,
        timeout=120, env={**os.environ, **bridge_env(**env)}, check=False))
    assert cli.returncode == 3, cli.stdout + cli.stderr
    assert "Traceback" not in cli.stderr and cli.stderr.count("\n") == 1, cli.stderr
    message = cli.stderr.removeprefix("jexida: ").strip()
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    async with bridge_client(config, env=env) as client:
        result = await client.call_tool("offload_to", {"command": "true", "node_id": node})
    assert result.is_error and result.content[0].text == message  # the same words, as is
