"""The MCP bridge through a real MCP client session (stdio), against bootstrapped lab nodes."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest
from conftest import WorkerLab, as_jexida
from mcp_client import ToolFailed, bridge_env, bridge_session, call

import jexida_lab as lab

pytestmark = [pytest.mark.integration, pytest.mark.anyio]





async def test_tools_and_schemas(lab_config: Path) -> None:
    async with bridge_session(lab_config) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert {"cluster_bash", "offload_to", "parallel_execute", "cluster_broadcast", "cluster_status",
            "list_worker_nodes", "get_worker_node", "check_worker_node", "register_worker_node",
            "provision_worker_node"} <= set(tools)
    bash = tools["cluster_bash"]
    assert bash.input_schema["required"] == ["command"]
    assert set(bash.input_schema["properties"]) == {"command", "requires_os", "requires_arch", "requires_tags",
                                                    "timeout_s"}
    output = bash.output_schema["properties"]
    assert {"node", "rc", "ok", "status", "stdout", "stderr", "duration_ms", "truncated", "routing"} <= set(output)
    assert tools["offload_to"].input_schema["required"] == ["command", "node_id"]


async def test_routes_away_from_the_node_busy_with_a_job(worker_lab: WorkerLab, lab_config: Path) -> None:
    first, second = worker_lab.nodes[0], worker_lab.nodes[1]
    busy = as_jexida(worker_lab, first, "mkdir -p /opt/jexida-jobs/busy && (nohup sleep 120 >/dev/null 2>&1 & "
                                        "echo $! > /opt/jexida-jobs/busy/pid)")
    assert busy.returncode == 0, busy.stderr
    try:
        async with bridge_session(lab_config) as session:
            result = await call(session, "cluster_bash", command="hostname", requires_tags=["docker"])
    finally:
        as_jexida(worker_lab, first, "kill $(cat /opt/jexida-jobs/busy/pid); rm -rf /opt/jexida-jobs/busy")
    assert result["status"] == "succeeded" and result["ok"] is True
    assert result["node"] == second.name and result["stdout"].strip() == second.name
    scores = {c["node"]: c["score"] for c in result["routing"]["candidates"] if c["score"] is not None}
    assert scores[first.name] > scores[second.name]
    assert result["routing"]["reason"]


async def test_required_tags_exclude_untagged_nodes_and_say_so(worker_lab: WorkerLab, lab_config: Path) -> None:
    async with bridge_session(lab_config) as session:
        result = await call(session, "cluster_bash", command="hostname", requires_tags=["gpu"])
        nothing = await call(session, "cluster_bash", command="hostname", requires_tags=["tpu"])
    assert result["node"] == worker_lab.nodes[0].name
    excluded = {c["node"]: c["excluded"] for c in result["routing"]["candidates"]}
    assert "gpu" in excluded[worker_lab.nodes[1].name] and "gpu" in excluded[worker_lab.nodes[2].name]
    assert nothing["status"] == "unreachable" and nothing["node"] is None
    assert "tpu" in nothing["routing"]["reason"] and "no node" in nothing["routing"]["reason"]


async def test_named_node_failures_and_policy(worker_lab: WorkerLab, lab_config: Path) -> None:
    node = worker_lab.nodes[2]
    async with bridge_session(lab_config) as session:
        with pytest.raises(ToolFailed, match=r"unknown node 'no-such-node'.*has: .*" + node.name):
            await call(session, "offload_to", command="true", node_id="no-such-node")
        failed = await call(session, "offload_to", command="echo partial; echo oops >&2; exit 7", node_id=node.name)
        rejected = await call(session, "offload_to", command="sudo rm -rf --no-preserve-root /", node_id=node.name)
        allowed = await call(session, "offload_to", command="mkdir -p /tmp/x/y && rm -rf /tmp/x", node_id=node.name)
    assert failed == failed | {"node": node.name, "ok": False, "rc": 7, "status": "failed"}
    assert failed["stdout"] == "partial" and failed["stderr"] == "oops"
    assert rejected["status"] == "rejected" and rejected["rule"] and rejected["rc"] is None
    assert allowed["status"] == "succeeded"


async def test_parallel_execute_places_by_load_and_runs_at_once(worker_lab: WorkerLab, lab_config: Path) -> None:
    async with bridge_session(lab_config) as session:
        started = time.monotonic()
        result = await call(session, "parallel_execute", commands=["sleep 2; hostname"] * 6 + ["reboot"])
        wall = time.monotonic() - started
    outcomes = result["results"]
    assert [r["status"] for r in outcomes] == ["succeeded"] * 6 + ["rejected"]
    placed = Counter(r["node"] for r in outcomes[:6])
    assert placed == {node.name: 2 for node in worker_lab.nodes}
    assert all(r["stdout"].strip() == r["node"] for r in outcomes[:6])
    assert wall < 12, f"6 x sleep 2 over 3 nodes took {wall:.1f}s"


async def test_broadcast_on_a_pattern(worker_lab: WorkerLab, lab_config: Path) -> None:
    async with bridge_session(lab_config) as session:
        result = await call(session, "cluster_broadcast", command="hostname", pattern="tag_docker:&available")
        with pytest.raises(ToolFailed, match="no node matches"):
            await call(session, "cluster_broadcast", command="true", pattern="tag_nothing")
    assert sorted(result["matched"]) == sorted(n.name for n in worker_lab.nodes[:2])
    assert {r["node"]: r["stdout"].strip() for r in result["results"]} == {n: n for n in result["matched"]}


async def test_timeout_kills_the_process_on_the_node(worker_lab: WorkerLab, lab_config: Path) -> None:
    node = worker_lab.nodes[1]
    async with bridge_session(lab_config) as session:
        result = await call(session, "offload_to", command="sleep 313; echo never", node_id=node.name, timeout_s=2)
    assert result["status"] == "timeout" and result["ok"] is False
    assert "never" not in result["stdout"]
    left = as_jexida(worker_lab, node, "ps -eo args | grep -c '[s]leep 313' || true")
    assert left.stdout.strip() == "0", "the command must be killed on the node, not only abandoned"


async def test_output_is_capped_keeping_head_and_tail(worker_lab: WorkerLab, lab_config: Path) -> None:
    async with bridge_session(lab_config, JEXIDA_OUTPUT_CAP="65536") as session:
        result = await call(session, "offload_to", command="seq 1 300000", node_id=worker_lab.nodes[0].name)
    assert result["truncated"] is True and result["status"] == "succeeded"
    assert result["stdout"].startswith("1\n2\n3\n") and result["stdout"].endswith("299999\n300000")
    assert result["stdout_bytes"] > 1_000_000 and len(result["stdout"]) < 70_000


async def test_a_long_command_does_not_hold_up_a_short_one(worker_lab: WorkerLab, lab_config: Path) -> None:
    finished: list[str] = []
    async with bridge_session(lab_config) as session:

        async def run(name: str, command: str) -> None:
            await call(session, "offload_to", command=command, node_id=worker_lab.nodes[0].name)
            finished.append(name)

        async with anyio.create_task_group() as group:
            group.start_soon(run, "long", "sleep 6")
            await anyio.sleep(0.5)
            group.start_soon(run, "short", "true")
    assert finished == ["short", "long"]


async def test_status_and_node_tools(worker_lab: WorkerLab, lab_config: Path) -> None:
    async with bridge_session(lab_config) as session:
        status = await call(session, "cluster_status")
        listed = await call(session, "list_worker_nodes", tag="docker")
        one = await call(session, "get_worker_node", name=worker_lab.nodes[0].name)
        check = await call(session, "check_worker_node", name=worker_lab.nodes[0].name, detailed=True)
    assert status["total"] == 3 and status["available"] == 3
    assert {n["name"]: n["health"] for n in status["nodes"]} == {n.name: "available" for n in worker_lab.nodes}
    assert sorted(n["name"] for n in listed["result"]) == sorted(n.name for n in worker_lab.nodes[:2])
    assert one["tags"] == ["gpu", "docker"] and one["facts"]["cpus"] >= 1
    assert check["reachable"] is True and check["latency_ms"] > 0
    assert check["job_dirs_writable"] is True and check["python_version"].startswith("3.")



async def test_stopped_node_is_skipped_and_reported(worker_lab: WorkerLab, lab_config: Path,
                                                    stopped_node: lab.LabNode) -> None:
    async with bridge_session(lab_config) as session:
        result = await call(session, "cluster_bash", command="hostname")
        status = await call(session, "cluster_status")
        direct = await call(session, "offload_to", command="true", node_id=stopped_node.name)
    assert result["status"] == "succeeded" and result["node"] != stopped_node.name
    excluded = {c["node"]: c["excluded"] for c in result["routing"]["candidates"]}
    assert "unreachable" in excluded[stopped_node.name]
    assert status["unreachable"] == 1
    assert direct["status"] == "unreachable" and stopped_node.name in direct["message"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(port: int, headers: dict[str, str]) -> int:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/mcp", body=body, headers={"Content-Type": "application/json",
                                                        "Accept": "application/json, text/event-stream", **headers})
    status = conn.getresponse().status
    conn.close()
    return status


def test_http_transport_requires_the_token(lab_config: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jexida"), "serve", "--http", "--host", "127.0.0.1", "--port", str(port),
         "--inventory", str(lab_config)],
        env=bridge_env(JEXIDA_TOKEN="s3cret-token"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        assert _post(port, {}) == 401
        assert _post(port, {"Authorization": "Bearer wrong"}) == 401
        good = {"Authorization": "Bearer s3cret-token"}
        assert _post(port, good) == 200
        assert _post(port, {**good, "Host": "evil.example:80"}) in (400, 403, 421)
        assert _post(port, {**good, "Origin": "http://evil.example"}) in (400, 403)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_http_transport_off_loopback_needs_allowed_host_names(lab_config: Path) -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "jexida"), "serve", "--http", "--host", "0.0.0.0", "--port", "1",
         "--inventory", str(lab_config)],
        env=bridge_env(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 3
    assert "--allowed-host NAME" in proc.stderr and "Traceback" not in proc.stderr
