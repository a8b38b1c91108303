"""Tracked jobs through a real MCP client session, against bootstrapped lab nodes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest
from conftest import WorkerLab, as_jexida, node_stopped
from mcp_client import ToolFailed, bridge_env, bridge_pids, bridge_session, call, submit_then_kill_bridge

from mcp_bridge.paths import state_dir

pytestmark = [pytest.mark.integration, pytest.mark.anyio]





async def wait_for(session: object, job_id: str, statuses: tuple[str, ...], within_s: float = 90) -> dict:
    deadline = time.monotonic() + within_s
    while True:
        job = await call(session, "get_job", job_id=job_id)  # type: ignore[arg-type]
        if job["status"] in statuses or time.monotonic() > deadline:
            return job
        await anyio.sleep(1)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_submit_returns_running_then_succeeds_with_its_output(lab_config: Path) -> None:
    async with bridge_session(lab_config) as session:
        submitted = await call(session, "submit_job", command="sleep 20; echo done", wait_s=1,
                               description="pytest: sleep 20")
        assert submitted["status"] == "running" and submitted["job_id"].startswith("j-")
        finished = await wait_for(session, submitted["job_id"], ("succeeded", "failed", "lost"))
        result_page = await call(session, "job_output", job_id=submitted["job_id"], tail=1)
        listed = await call(session, "list_jobs", node_name=submitted["node"], limit=50)
    assert finished["status"] == "succeeded" and finished["rc"] == 0
    assert finished["last_lines"] == ["done"]
    assert result_page["data"].strip() == "done"
    assert submitted["job_id"] in [j["job_id"] for j in listed["result"]]


async def test_short_job_returns_its_full_result_and_reports_progress(lab_config: Path) -> None:
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with bridge_session(lab_config) as session:
        result = await session.call_tool(
            "submit_job", {"command": "for i in 1 2 3 4 5 6; do echo tick $i; sleep 1; done; echo err >&2; exit 2",
                           "wait_s": 30}, progress_callback=on_progress)
    job = result.structured_content
    assert job is not None and job["status"] == "failed" and job["rc"] == 2
    assert job["stdout"].splitlines()[-1] == "tick 6" and job["stderr"] == "err"
    assert messages, "no progress notification arrived while the job ran"
    assert any("tick" in m for m in messages) and all(job["job_id"] in m for m in messages)


async def test_bad_job_input_is_a_clear_error(lab_config: Path) -> None:
    async with bridge_session(lab_config) as session:
        with pytest.raises(ToolFailed, match="bad job id"):
            await call(session, "get_job", job_id="../../etc/passwd")
        with pytest.raises(ToolFailed, match="unknown job"):
            await call(session, "get_job", job_id="j-20200101-000000-abcdef")
        refused = await call(session, "submit_job", command="dd if=/dev/zero of=/dev/sda")
        assert refused["status"] == "rejected" and "refused by the policy" in refused["error"], refused
        listed = await call(session, "list_jobs", status="rejected")
        assert refused["job_id"] in [job["job_id"] for job in listed["result"]]
        with pytest.raises(ToolFailed, match="unknown node"):
            await call(session, "submit_job", command="true", node_name="nope")


async def test_job_survives_a_killed_bridge_and_its_real_rc_is_collected(lab_config: Path) -> None:
    submitted = await submit_then_kill_bridge(lab_config, command="sleep 8; echo finishing; exit 3")
    async with bridge_session(lab_config) as session:
        job = await wait_for(session, submitted["job_id"], ("failed", "succeeded", "lost"))
    assert job["status"] == "failed" and job["rc"] == 3, job
    assert job["last_lines"] == ["finishing"]


async def test_cancel_stops_the_whole_tree_on_the_node(worker_lab: WorkerLab, lab_config: Path) -> None:
    node = worker_lab.nodes[2]
    async with bridge_session(lab_config) as session:
        submitted = await call(session, "submit_job", command="sleep 611 & sleep 612; wait", node_name=node.name,
                               wait_s=1)
        assert as_jexida(worker_lab, node, "pgrep -fc 'sleep 61[12]'").stdout.strip() == "2"
        canceled = await call(session, "cancel_job", job_id=submitted["job_id"])
        again = await call(session, "cancel_job", job_id=submitted["job_id"])
        job = await call(session, "get_job", job_id=submitted["job_id"])
    assert canceled["canceled"] is True and canceled["status"] == "canceled"
    assert "stopped" in canceled["message"]
    assert again["canceled"] is False and "nothing to cancel" in again["message"]
    assert job["status"] == "canceled"
    left = as_jexida(worker_lab, node, "pgrep -f 'sleep 61[12]' || echo none")
    assert left.stdout.strip() == "none", "processes of the canceled job are still running"


async def test_huge_output_keeps_the_bridge_small_and_reads_anywhere(worker_lab: WorkerLab, lab_config: Path) -> None:
    node = worker_lab.nodes[0]
    async with bridge_session(lab_config) as session:
        await call(session, "cluster_status")
        pid = bridge_pids(lab_config)[0]
        before = rss_kb(pid)
        job = await call(session, "submit_job", command="seq 1 14000000", node_name=node.name, wait_s=60)
        after = rss_kb(pid)
        tail = await call(session, "job_output", job_id=job["job_id"], tail=5)
        middle = await call(session, "job_output", job_id=job["job_id"], offset=50_000_000, limit=200)
    assert job["status"] == "succeeded" and job["stdout_bytes"] > 100_000_000
    assert job["truncated"] is True and len(job["stdout"]) < 1_100_000
    assert tail["data"].split() == [str(n) for n in range(13999996, 14000001)]
    numbers = [int(x) for x in middle["data"].split("\n")[1:-1]]
    assert len(numbers) > 10 and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert middle["next_offset"] == 50_000_200 and middle["total_bytes"] == job["stdout_bytes"]
    assert (after - before) < 30 * 1024, f"bridge RSS grew by {(after - before) / 1024:.1f} MB"


async def test_twenty_jobs_at_once_are_placed_by_load(worker_lab: WorkerLab, lab_config: Path) -> None:
    async with bridge_session(lab_config) as session:
        submitted: list[dict] = []

        async def submit(index: int) -> None:
            submitted.append(await call(session, "submit_job", command=f"sleep 4; echo job{index}", wait_s=0))

        async with anyio.create_task_group() as group:
            for index in range(20):
                group.start_soon(submit, index)
        finished = [await wait_for(session, job["job_id"], ("succeeded", "failed", "lost")) for job in submitted]
    assert [job["status"] for job in finished] == ["succeeded"] * 20
    placed = Counter(job["node"] for job in finished)
    assert set(placed) == {node.name for node in worker_lab.nodes}
    assert max(placed.values()) - min(placed.values()) <= 2, placed



async def test_node_stopped_mid_job_loses_the_job_with_a_reason(worker_lab: WorkerLab, lab_config: Path) -> None:
    node = worker_lab.nodes[1]
    async with bridge_session(lab_config, JEXIDA_JOB_LOST_AFTER="3") as session:
        job = await call(session, "submit_job", command="sleep 120", node_name=node.name, wait_s=0)
        with node_stopped(worker_lab, 1):
            lost = await wait_for(session, job["job_id"], ("lost", "failed"), within_s=60)
            other = await call(session, "cluster_bash", command="echo still-working")
    assert lost["status"] == "lost", lost
    assert f"node {node.name} unreachable for 3s" in (lost["error"] or "")
    assert other["status"] == "succeeded" and other["stdout"] == "still-working"


def test_audit_log_records_actions_and_detects_an_edit(tmp_path: Path) -> None:
    log = state_dir() / "audit.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    actions = Counter(entry["action"] for entry in entries)
    for action in ("command", "submit", "cancel", "job-finished", "broadcast"):
        assert actions[action] > 0, f"no {action} in the audit log"
    assert {"mcp-stdio", "cli"} <= {entry["face"] for entry in entries}
    jexida = str(Path(sys.executable).parent / "jexida")
    ok = subprocess.run([jexida, "audit", "verify"], capture_output=True, text=True, env=bridge_env(), check=False)
    assert ok.returncode == 0 and "chain intact" in ok.stdout
    copy = tmp_path / "audit.jsonl"
    lines = log.read_text().splitlines()
    edited = json.loads(lines[2])
    edited["command"] = "something else"
    lines[2] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    copy.write_text("\n".join(lines) + "\n")
    (tmp_path / "audit.jsonl.head").write_text((log.parent / "audit.jsonl.head").read_text())
    (tmp_path / "audit.key").write_text((log.parent / "audit.key").read_text())  # verify needs the key
    broken = subprocess.run([jexida, "audit", "verify", "--path", str(copy)], capture_output=True, text=True,
                            env=bridge_env(), check=False)
    assert broken.returncode == 1 and "line 3" in broken.stdout
