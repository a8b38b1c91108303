"""`make demo`: the main job end to end on a 3-node lab of real worker nodes.

Fresh servers -> one bootstrap playbook run -> the jexida inventory's groups -> commands
routed by load through a real MCP client session (the way Claude Code talks to the bridge).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import mcp_types as types
import yaml
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

import jexida_lab as lab
from mcp_bridge.paths import state_dir

REPO_ROOT = Path(__file__).resolve().parent.parent

DEMO_LAB = "demo"
DEMO_TAGS = (["gpu", "docker"], ["docker"], ["build"])
BIN = Path(sys.executable).parent


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, env=env, check=False)


def bootstrap(status: lab.LabStatus, registry: Path) -> None:
    inventory = yaml.safe_load(Path(status.inventory).read_text())
    hosts = next(iter(inventory["all"]["children"].values()))["hosts"]
    for node, tags in zip(status.nodes, DEMO_TAGS, strict=True):
        hosts[node.name]["jexida_tags"] = tags
    admin_inventory = registry.parent / "admin-inventory.yml"
    admin_inventory.write_text(yaml.safe_dump(inventory))
    print(f"   ansible-playbook -i {admin_inventory} jexida.cluster.bootstrap -e jexida_registry={registry}")
    proc = run(["ansible-playbook", "-i", str(admin_inventory), "jexida.cluster.bootstrap",
                "-e", f"jexida_registry={registry}"])
    for line in proc.stdout.splitlines():
        if '"msg": "' in line or line.startswith(tuple(n.name for n in status.nodes)):
            print("  ", line.strip().replace('"msg": ', ""))
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-2000:], file=sys.stderr)
        raise SystemExit("demo: bootstrap failed")


async def agent_session(config: Path) -> None:
    params = StdioServerParameters(command=str(BIN / "jexida"), args=["serve", "--inventory", str(config)],
                                   env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    async def a_person(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        """The person at the client: shown the question, says yes."""
        print("   [elicitation] " + params.message.replace("\n", "\n   [elicitation] ") + "\n   [person] yes")
        return types.ElicitResult(action="accept", content={"confirm": True})

    async with stdio_client(params) as (read, write), ClientSession(read, write,
                                                                    elicitation_callback=a_person) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        print(f"   {len(tools)} tools: {', '.join(t.name for t in tools)}")

        status = (await session.call_tool("cluster_status", {})).structured_content or {}
        print(f"   cluster_status: {status['total']} nodes, {status['available']} available, "
              f"load groups {status['by_load_group']}")

        result = (await session.call_tool(
            "cluster_bash", {"command": "echo \"$(hostname): $(nproc) cpus, up $(cut -d' ' -f1 /proc/uptime)s\"",
                             "requires_tags": ["docker"]})).structured_content or {}
        print(f"   cluster_bash(requires_tags=[docker]) -> {result['node']}: {result['stdout'].strip()}")
        print(f"     routing: {result['routing']['reason']}")
        for candidate in result["routing"]["candidates"]:
            why = candidate["excluded"] or f"score {candidate['score']}"
            print(f"       {candidate['node']:<14} {why}")

        parallel = (await session.call_tool(
            "parallel_execute", {"commands": ["sleep 1; hostname"] * 6})).structured_content or {}
        placed = [r["node"] for r in parallel["results"]]
        print(f"   parallel_execute(6 x 'sleep 1') in {parallel['duration_ms']} ms, placed by load: {placed}")

        rejected = (await session.call_tool("cluster_bash", {"command": "rm -rf /"})).structured_content or {}
        print(f"   cluster_bash('rm -rf /') -> {rejected['status']} by rule {rejected['rule']}")
        unsure = (await session.call_tool("cluster_bash", {"command": "$(printf echo) asked-first"})
                  ).structured_content or {}
        print(f"   cluster_bash('$(printf echo) asked-first') -> the person was asked; {unsure['status']}: "
              f"{unsure['stdout'].strip()}")
        failed = (await session.call_tool("cluster_bash", {"command": "exit 3"})).structured_content or {}
        print(f"   cluster_bash('exit 3') -> ok={failed['ok']} status={failed['status']} rc={failed['rc']}")

        job = (await session.call_tool("submit_job", {
            "command": "for i in 1 2 3 4; do echo step $i; sleep 1; done", "wait_s": 1,
            "description": "demo job"})).structured_content or {}
        print(f"   submit_job(4 s of work, wait_s=1) -> {job['job_id']} {job['status']} on {job['node']}")
        while job["status"] in ("queued", "running"):
            await anyio.sleep(1)
            job = (await session.call_tool("get_job", {"job_id": job["job_id"]})).structured_content or {}
        print(f"   get_job -> {job['status']} rc={job['rc']}, last lines {job['last_lines']}")


def main() -> int:
    step("1. lab: 3 fresh Debian 12 servers (podman containers, each sshd on its own loopback address)")
    status = lab.up(DEMO_LAB, nodes=3)
    for node in status.nodes:
        print(f"   {node.name:<14} {node.address}:{node.port}  {'up' if node.up else 'DOWN'}")

    work = state_dir() / "demo"
    work.mkdir(parents=True, exist_ok=True)
    registry = work / "nodes.yml"
    step("2. one playbook makes them workers: jexida user, controller key, dirs, verified, registered")
    bootstrap(status, registry)

    config = work / "demo.jexida.yml"
    config.write_text(yaml.safe_dump({"plugin": "jexida.cluster.jexida", "nodes_file": str(registry)}))
    step(f"3. the jexida inventory: groups from tags and live load (ansible-inventory -i {config} --graph)")
    graph = run(["ansible-inventory", "-i", str(config), "--graph"])
    print("\n".join("   " + line for line in graph.stdout.splitlines()))
    pattern = run(["ansible", "-i", str(config), "tag_docker:&available", "-m", "ansible.builtin.ping", "-o"])
    print("   ansible 'tag_docker:&available' -m ping:", ", ".join(
        line.split(" |")[0] + " " + line.split("|")[1].split("=>")[0].strip()
        for line in pattern.stdout.splitlines() if "|" in line))

    step("4. an agent's MCP session (jexida serve over stdio): routed by load, through ansible-runner")
    anyio.run(agent_session, config)

    print(f"\ndemo: ok. Registry: {registry}. `jexida status --inventory {config}` shows the nodes;"
          f" `jexida lab down --name demo` removes the lab.")
    print(json.dumps({"claude_code_mcp_config": {"mcpServers": {"jexida": {
        "command": str(BIN / "jexida"), "args": ["serve", "--inventory", str(config)]}}}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
