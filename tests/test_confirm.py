"""A person in the loop, through the real stack on a lab: MCP elicitation (accept, decline, cancel,
no capability, the on_unsure fallback) in both protocol generations, the CLI's prompt, and an
audit intent line written before the command runs.

Commands the policy is unsure of are harmless here: their program name is only built at run
time (`$(printf echo) ...`, `$(printf touch) /tmp/marker`), which is what makes them *confirm*.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pexpect
import pytest
from conftest import WorkerLab, as_jexida
from mcp_client import MODES, bridge_client, bridge_env, structured

from mcp_bridge.paths import state_dir

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
generations = pytest.mark.parametrize("mode", list(MODES.values()), ids=list(MODES))
JEXIDA = str(Path(sys.executable).parent / "jexida")


def answering(action: str, confirm: bool = True, asked: list[str] | None = None) -> Any:
    async def elicitation_callback(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        if asked is not None:
            asked.append(params.message)
        if action == "accept":
            return types.ElicitResult(action="accept", content={"confirm": confirm})
        return types.ElicitResult(action=action)  # type: ignore[arg-type]

    return elicitation_callback


def marker_exists(worker_lab: WorkerLab, path: str) -> bool:
    return as_jexida(worker_lab, worker_lab.nodes[0], f"test -e {path} && echo yes || echo no").stdout.strip() == "yes"


@generations
async def test_a_yes_runs_the_command(worker_lab: WorkerLab, lab_config: Path, mode: str) -> None:
    node = worker_lab.nodes[0].name
    asked: list[str] = []
    async with bridge_client(lab_config, mode, elicitation_callback=answering("accept", asked=asked)) as client:
        result = await structured(client, "offload_to", command="$(printf echo) confirmed-run", node_id=node)
    assert result["status"] == "succeeded" and result["stdout"].strip() == "confirmed-run", result
    assert len(asked) == 1 and "$(printf echo) confirmed-run" in asked[0] and node in asked[0]
    assert "dynamic-program" in asked[0]
    assert "a person said yes" in result["message"]


@generations
@pytest.mark.parametrize("answer", ["decline", "cancel", "accept-no"])
async def test_a_no_runs_nothing(worker_lab: WorkerLab, lab_config: Path, mode: str, answer: str) -> None:
    marker = f"/tmp/jexida-declined-{secrets.token_hex(4)}"
    callback = answering("accept", confirm=False) if answer == "accept-no" else answering(answer)
    async with bridge_client(lab_config, mode, elicitation_callback=callback) as client:
        result = await structured(client, "offload_to", command=f"$(printf touch) {marker}",
                                  node_id=worker_lab.nodes[0].name)
    assert result["status"] == "declined" and result["rc"] is None, result
    assert "not run" in result["message"]
    assert not await anyio.to_thread.run_sync(marker_exists, worker_lab, marker)


@generations
async def test_a_client_without_elicitation_gets_the_fallback_explained(worker_lab: WorkerLab, lab_config: Path,
                                                                        mode: str) -> None:
    marker = f"/tmp/jexida-unasked-{secrets.token_hex(4)}"
    async with bridge_client(lab_config, mode) as client:  # no elicitation callback: no capability
        result = await structured(client, "offload_to", command=f"$(printf touch) {marker}",
                                  node_id=worker_lab.nodes[0].name)
    assert result["status"] == "rejected" and result["rule"] == "dynamic-program", result
    assert "no elicitation capability" in result["message"] and "on_unsure: allow" in result["message"]
    assert not await anyio.to_thread.run_sync(marker_exists, worker_lab, marker)


async def test_on_unsure_allow_runs_and_says_so(worker_lab: WorkerLab, lab_config: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text("on_unsure: allow\n")
    async with bridge_client(lab_config, env={"JEXIDA_POLICY": str(policy)}) as client:
        result = await structured(client, "offload_to", command="$(printf echo) by-fallback",
                                  node_id=worker_lab.nodes[0].name)
    assert result["status"] == "succeeded" and result["stdout"].strip() == "by-fallback"
    assert "on_unsure is allow" in result["message"] and str(policy) in result["message"]


def audit_entries() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (state_dir() / "audit.jsonl").read_text().splitlines()]


async def test_the_intent_is_in_the_audit_while_the_command_still_runs(worker_lab: WorkerLab,
                                                                       lab_config: Path) -> None:
    command = f"sleep 6; echo {secrets.token_hex(4)}"
    async with bridge_client(lab_config) as client, anyio.create_task_group() as tasks:
        tasks.start_soon(client.call_tool, "offload_to", {"command": command, "node_id": worker_lab.nodes[1].name})
        intent = None
        with anyio.fail_after(30):
            while intent is None:
                await anyio.sleep(0.3)
                intent = next((e for e in audit_entries() if e.get("command") == command), None)
        outcome_meanwhile = [e for e in audit_entries() if e.get("intent") == intent["mac"]]
    outcome = [e for e in audit_entries() if e.get("intent") == intent["mac"]]
    assert intent["phase"] == "intent" and intent["decision"] == "allow"
    assert intent["nodes"] == [worker_lab.nodes[1].name]
    assert outcome_meanwhile == []  # written before the command ended
    assert [e["status"] for e in outcome] == ["succeeded"]


def _cli_prompt(command: str, node: str, lab_config: Path, reply: str) -> pexpect.spawn:
    """`jexida run COMMAND` at a terminal: wait for its question, answer ``reply``, read to the end."""
    asked = pexpect.spawn(JEXIDA, ["run", command, "--node", node, "--inventory", str(lab_config)],
                          env=bridge_env(), encoding="utf-8", timeout=120)
    asked.expect(r"Run it\? \[y/N\]")
    asked.sendline(reply)
    asked.expect(pexpect.EOF)
    asked.close()
    return asked


def test_the_cli_asks_at_a_terminal_and_takes_yes(worker_lab: WorkerLab, lab_config: Path) -> None:
    node = worker_lab.nodes[0].name
    env = bridge_env()
    # Each command is new to the audit log, which outlives test sessions.
    yes, no, nobody, flag = (f"$(printf echo) cli-{what}-{secrets.token_hex(4)}"
                             for what in ("yes", "no", "nobody", "flag"))
    asked = _cli_prompt(yes, node, lab_config, "y")
    assert asked.exitstatus == 0 and yes.split()[-1] in (asked.before or "")
    refused = _cli_prompt(no, node, lab_config, "n")
    assert refused.exitstatus == 126 and "declined" in (refused.before or "")

    no_terminal = subprocess.run([JEXIDA, "run", nobody, "--node", node, "--inventory", str(lab_config)],
                                 capture_output=True, text=True, env=env, timeout=120,
                                 stdin=subprocess.DEVNULL, check=False)
    assert no_terminal.returncode == 126 and "pass --yes" in no_terminal.stderr
    with_yes = subprocess.run([JEXIDA, "run", flag, "--node", node, "--yes", "--inventory", str(lab_config)],
                              capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL,
                              check=False)
    assert with_yes.returncode == 0 and with_yes.stdout.strip() == flag.split()[-1]
    answers = {e.get("command"): e.get("answer") for e in audit_entries() if e.get("phase") in ("intent", None)}
    assert answers.get(yes) == "accepted"
    assert answers.get(no) == "declined"
    assert answers.get(flag) == "accepted"


def test_policy_check_on_a_file(tmp_path: Path) -> None:
    commands = ["ls -la", "$(printf echo) x", "mkfs.ext4 /dev/sda1"]
    listing = tmp_path / "commands.json"
    listing.write_text(json.dumps(commands))
    done = subprocess.run([JEXIDA, "policy", "check", "--json", "--file", str(listing)], capture_output=True,
                          text=True, env=bridge_env(), timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    decisions = json.loads(done.stdout)
    assert [d["command"] for d in decisions] == commands
    assert [d["decision"] for d in decisions] == ["allow", "confirm", "deny"]
    assert decisions[1]["rule"] == "dynamic-program" and decisions[2]["rule"] == "disk-format"
    assert all(d["reason"] for d in decisions)
