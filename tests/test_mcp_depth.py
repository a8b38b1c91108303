"""MCP depth through real sessions on a lab, in both protocol generations: annotations, resources,
completion, job resource updates, progress, and cancellation that reaches the node."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from conftest import WorkerLab, as_jexida
from mcp_client import MODES, bridge_client, structured

from mcp_bridge.paths import state_dir

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
generations = pytest.mark.parametrize("mode", list(MODES.values()), ids=list(MODES))

# tool -> (readOnlyHint, destructiveHint, idempotentHint, openWorldHint)
ANNOTATIONS = {
    "cluster_bash": (False, True, False, True),
    "offload_to": (False, True, False, True),
    "parallel_execute": (False, True, False, True),
    "cluster_broadcast": (False, True, False, True),
    "submit_job": (False, True, False, True),
    "cluster_status": (True, False, True, True),
    "list_worker_nodes": (True, False, True, True),
    "get_worker_node": (True, False, True, True),
    "check_worker_node": (True, False, True, True),
    "register_worker_node": (False, True, True, False),
    "provision_worker_node": (False, True, True, True),
    "get_job": (True, False, True, True),
    "job_output": (True, False, True, True),
    "cancel_job": (False, True, True, True),
    "list_jobs": (True, False, True, False),
}


@generations
async def test_every_tool_is_annotated_titled_and_described(lab_config: Path, mode: str) -> None:
    async with bridge_client(lab_config, mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == set(ANNOTATIONS)
    for name, tool in tools.items():
        hints = tool.annotations
        assert hints is not None and tool.title, name
        assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint,
                hints.open_world_hint) == ANNOTATIONS[name], name
        assert tool.output_schema, f"{name} has no output schema"
        for field, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{name}.{field} has no description"


@generations
async def test_resources_are_listed_and_read(worker_lab: WorkerLab, lab_config: Path, mode: str) -> None:
    first = worker_lab.nodes[0].name
    async with bridge_client(lab_config, mode) as client:
        static = {str(r.uri) for r in (await client.list_resources()).resources}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        nodes = json.loads((await client.read_resource("jexida://nodes")).contents[0].text)
        one = json.loads((await client.read_resource(f"jexida://nodes/{first}")).contents[0].text)
        gpu = json.loads((await client.read_resource("jexida://groups/tag_gpu:&available")).contents[0].text)
    assert {"jexida://nodes", "jexida://jobs"} <= static
    assert {"jexida://nodes/{name}", "jexida://jobs/{job_id}", "jexida://jobs/{job_id}/log{?stream,offset,limit,tail}",
            "jexida://tags/{tag}", "jexida://groups/{+pattern}"} <= templates
    assert {n["name"] for n in nodes} >= {n.name for n in worker_lab.nodes}
    assert one["name"] == first and one["facts"]["reachable"] is True and one["health"] == "available"
    assert gpu == [first]


@generations
async def test_completion_of_names_tags_patterns_and_job_ids(worker_lab: WorkerLab, lab_config: Path,
                                                             mode: str) -> None:
    node = worker_lab.nodes[0].name
    async with bridge_client(lab_config, mode) as client:
        job = await structured(client, "submit_job", command="echo for-completion", wait_s=5)

        async def complete(ref: Any, name: str, value: str) -> list[str]:
            return (await client.complete(ref, {"name": name, "value": value})).completion.values

        by_name = await complete(types.ResourceTemplateReference(uri="jexida://nodes/{name}"), "name", node[:-1])
        by_job = await complete(types.ResourceTemplateReference(uri="jexida://jobs/{job_id}"), "job_id",
                                job["job_id"][:-3])
        by_tag = await complete(types.PromptReference(name="nodes_with_tag"), "tag", "gp")
        by_pattern = await complete(types.PromptReference(name="broadcast"), "pattern", "tag_docker:&av")
        by_prompt_node = await complete(types.PromptReference(name="run_on_node"), "node_name", node[:-1])
    assert node in by_name and node in by_prompt_node
    assert job["job_id"] in by_job
    assert by_tag == ["gpu"]
    assert by_pattern == ["tag_docker:&available"]


async def status_of(client: Any, uri: str) -> str:
    return str(json.loads((await client.read_resource(uri)).contents[0].text)["status"])


@generations
async def test_a_job_resource_is_updated_while_the_job_runs(lab_config: Path, mode: str) -> None:
    updates: list[tuple[float, str]] = []

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", message)
        if getattr(root, "method", "") == "notifications/resources/updated":
            updates.append((time.monotonic(), str(root.params.uri)))

    command = "for i in 1 2 3 4 5 6; do echo line $i; sleep 1; done"
    async with bridge_client(lab_config, mode, message_handler=on_message) as client:
        job = await structured(client, "submit_job", command=command, wait_s=0)
        uri = f"jexida://jobs/{job['job_id']}"
        if mode == "legacy":
            await client.subscribe_resource(uri)
            with anyio.fail_after(60):
                while not updates or (await status_of(client, uri)) == "running":
                    await anyio.sleep(0.5)
            await anyio.sleep(3)  # the update for the end
        else:
            async with client.listen(resource_subscriptions=[uri]) as subscription:
                with anyio.fail_after(60):
                    async for event in subscription:
                        updates.append((time.monotonic(), str(event.uri)))
                        if (await status_of(client, uri)) != "running":
                            break
        final = json.loads((await client.read_resource(uri)).contents[0].text)
        log = (await client.read_resource(f"{uri}/log?tail=2")).contents[0].text
    assert final["status"] == "succeeded"
    assert [u for _, u in updates].count(uri) >= 2, updates  # while it ran, and when it ended
    assert log.split() == ["line", "5", "line", "6"]


@generations
async def test_a_canceled_call_stops_the_command_on_the_node(worker_lab: WorkerLab, lab_config: Path,
                                                             mode: str) -> None:
    node = worker_lab.nodes[1]
    marker = f"sleep 3000{'1' if mode == 'legacy' else '2'}"
    async with bridge_client(lab_config, mode) as client:
        with anyio.move_on_after(6) as scope:
            await client.call_tool("offload_to", {"command": f"{marker}; echo never", "node_id": node.name})
        assert scope.cancelled_caught
        running = as_jexida(worker_lab, node, f"pgrep -f '^{marker}$' || true").stdout.split()
        deadline = time.monotonic() + 10
        while running and time.monotonic() < deadline:
            time.sleep(0.5)
            running = as_jexida(worker_lab, node, f"pgrep -f '^{marker}$' || true").stdout.split()
        after = await structured(client, "offload_to", command="echo still-serving", node_id=node.name)
    assert running == [], f"{marker} still runs on {node.name}: {running}"
    assert after["stdout"].strip() == "still-serving"
    entries = [json.loads(line) for line in (state_dir() / "audit.jsonl").read_text().splitlines()]
    intents = {e["mac"] for e in entries if e.get("phase") == "intent" and marker in (e.get("command") or "")}
    outcomes = [e for e in entries if e.get("phase") == "outcome" and e.get("intent") in intents]
    assert [e["status"] for e in outcomes] == ["canceled"], outcomes


@generations
async def test_progress_during_a_five_node_broadcast_and_parallel_run(fanout_config: Path, mode: str) -> None:
    seen: dict[str, list[tuple[float, float | None]]] = {"broadcast": [], "parallel": []}

    def recorder(kind: str) -> Any:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen[kind].append((progress, total))
        return on_progress

    async with bridge_client(fanout_config, mode) as client:
        broadcast = await client.call_tool("cluster_broadcast", {"command": "sleep 1; hostname", "pattern": "all"},
                                           progress_callback=recorder("broadcast"))
        parallel = await client.call_tool("parallel_execute", {"commands": [f"sleep 1; echo {i}" for i in range(5)]},
                                          progress_callback=recorder("parallel"))
    assert broadcast.structured_content and broadcast.structured_content["succeeded"] == 5
    assert parallel.structured_content and parallel.structured_content["succeeded"] == 5
    for kind in ("broadcast", "parallel"):
        assert seen[kind], f"no progress during the {kind}"
        assert seen[kind][-1] == (5, 5) and all(total == 5 for _, total in seen[kind]), seen[kind]
        assert [p for p, _ in seen[kind]] == sorted(p for p, _ in seen[kind])


async def test_a_long_command_reports_elapsed_time(lab_config: Path) -> None:
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with bridge_client(lab_config) as client:
        result = await client.call_tool("cluster_bash", {"command": "sleep 7; echo slow-done"},
                                        progress_callback=on_progress)
    assert result.structured_content and result.structured_content["stdout"].strip() == "slow-done"
    assert any("still running after" in m for m in messages), messages
