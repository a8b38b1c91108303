"""Cases on one node: a trivial command every way (case 1, with issue 12's levers), a tracked job
(case 7), a light command on the controller (case 8) and the bridge's memory (case 6)."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
import yaml

from bench.common import BIN, REPO_ROOT, base_env, rss_mb, sh
from bench.context import Context
from bench.mcp_client import mcp_calls, mcp_memory
from bench.report import measure


def case_one_command(ctx: Context) -> None:
    report, bl, runs = ctx.report, ctx.bl, ctx.runs
    print("case 1: one trivial command on one warm node", flush=True)
    node = bl.nodes[0]
    target = f"jexida@{node.address}"
    new_conn = report.add("1", "ssh, new connection", measure(
        lambda: sh(["ssh", *bl.ssh_opts(), "-o", "ControlPath=none", target, "true"]), runs))
    sock = str(bl.work / "cm.sock")
    sh(["ssh", *bl.ssh_opts(), "-M", "-S", sock, "-o", "ControlPersist=300", "-fN", target])
    try:
        report.add("1", "ssh over a warm ControlMaster", measure(
            lambda: sh(["ssh", *bl.ssh_opts(), "-S", sock, target, "true"]), runs))
    finally:
        sh(["ssh", "-S", sock, "-O", "exit", target], check=False)
    static = str(bl.static_inventory(1))
    empty_cfg = bl.work / "empty.cfg"
    empty_cfg.write_text("[defaults]\n")
    defaults = report.add("1", "ansible -m command, Ansible's default settings", measure(
        lambda: sh(["ansible", "-i", static, "all", "-m", "ansible.builtin.command", "-a", "true"],
                   env=base_env(ANSIBLE_CONFIG=str(empty_cfg))), runs))
    tuned = report.add("1", "ansible -m command, the suite's ansible.cfg", measure(
        lambda: sh(["ansible", "-i", static, "all", "-m", "ansible.builtin.command", "-a", "true"],
                   env=base_env(ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"))), runs))
    import ansible_runner

    from mcp_bridge.execution import ansible_envvars

    def bare_runner() -> None:
        with tempfile.TemporaryDirectory() as private:
            result = ansible_runner.run(private_data_dir=private, inventory=static, host_pattern="all",
                                        module="ansible.builtin.shell", module_args="true", quiet=True,
                                        envvars=ansible_envvars())
            assert result.status == "successful", result.status

    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    bare = report.add("1", "bare ansible_runner.run (shell true)", measure(bare_runner, runs))
    levers(ctx)
    config = bl.jexida_config(1)
    cli = report.add("1", "jexida run --node (CLI: Python start-up, registry read, run)", measure(
        lambda: sh(["jexida", "run", "true", "--node", node.name, "--inventory", str(config)], env=base_env()), runs))
    before, cold = anyio.run(functools.partial(mcp_calls, config, [("cluster_bash", {"command": "true"}),
                                                                   ("offload_to", {"command": "true",
                                                                                   "node_id": node.name})],
                                               runs, JEXIDA_WARM_ANSIBLE="0", JEXIDA_NODE_MODULE="shell"))
    report.add("1", "cluster_bash end to end, shell module, cold Ansible (before issue 12)", before)
    report.add("1", "offload_to end to end, shell module, cold Ansible (before issue 12)", cold)
    (raw_cold,) = anyio.run(functools.partial(mcp_calls, config, [("cluster_bash", {"command": "true"})], runs,
                                              JEXIDA_WARM_ANSIBLE="0"))
    report.add("1", "cluster_bash end to end, raw, cold Ansible (warm server off)", raw_cold)
    mcp, offload = anyio.run(mcp_calls, config, [("cluster_bash", {"command": "true"}),
                                                 ("offload_to", {"command": "true", "node_id": node.name})], runs)
    mcp_row = report.add("1", "cluster_bash end to end (one MCP session)", mcp)
    offload_row = report.add("1", "offload_to end to end (one MCP session)", offload)
    report.ratio("cluster_bash / bare runner", mcp_row, bare, "(target <= 1.05)")
    report.ratio("ansible defaults / suite cfg", defaults, tuned)
    report.ratio("jexida run / new ssh", cli, new_conn)
    report.target("cluster_bash end to end / new ssh connection", "4.0x", "<= 1.5x", "<= 1.0x",
                  mcp_row.median / new_conn.median, 1.5, "x")
    report.target("offload_to end to end / new ssh connection", "4.0x", "<= 1.5x", "<= 1.0x",
                  offload_row.median / new_conn.median, 1.5, "x")
    report.refs["new_ssh"] = new_conn


def levers(ctx: Context) -> None:
    """The execution layer alone (no MCP), one node, each lever of issue 12 on and off."""
    report, bl, runs = ctx.report, ctx.bl, ctx.runs
    from mcp_bridge import execution, runner_env, settings
    from mcp_bridge.warm import WarmAnsible

    node = bl.nodes[0]
    nodes = {node.name: {"ansible_host": node.address, "ansible_port": node.port, "ansible_user": "jexida",
                         "ansible_ssh_private_key_file": bl.key, "ansible_python_interpreter": "/usr/bin/python3",
                         "ansible_ssh_common_args": f"-o UserKnownHostsFile={bl.known_hosts} "
                                                   "-o StrictHostKeyChecking=yes"}}
    execution.skip_idle_wait_after_exit()

    def run_true() -> None:
        outcome = execution.run_shell(nodes=nodes, command="true", timeout_s=60, output_cap=1 << 20)
        assert outcome.hosts[node.name].ok, outcome.hosts

    warm = WarmAnsible()
    warm.start(execution.ansible_envvars())
    try:
        runner_env.warm_server = None
        os.environ[settings.NODE_MODULE_ENV] = "shell"
        report.add("1", "lever: run_shell, shell module, cold Ansible (before)", measure(run_true, runs))
        os.environ[settings.NODE_MODULE_ENV] = "raw"
        report.add("1", "lever 1: run_shell, raw, cold Ansible", measure(run_true, runs))
        deadline = time.monotonic() + 30
        while not warm.ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        runner_env.warm_server = warm
        os.environ[settings.NODE_MODULE_ENV] = "shell"
        report.add("1", "lever 2: run_shell, shell module, warm Ansible", measure(run_true, runs))
        os.environ[settings.NODE_MODULE_ENV] = "raw"
        report.add("1", "levers 1+2: run_shell, raw, warm Ansible (the bridge's path)", measure(run_true, runs))
        pid = warm.server_pid()
        if pid:
            report.notes.append(f"warm Ansible server RSS: {rss_mb(pid):.1f} MB (a process of its own; its forks "
                                "share these pages)")
    finally:
        runner_env.warm_server = None
        os.environ.pop(settings.NODE_MODULE_ENV, None)
        warm.close()


def case_job(ctx: Context) -> None:
    report, bl, runs = ctx.report, ctx.bl, ctx.runs
    print("case 7: submit_job until the job runs", flush=True)
    node = bl.nodes[0].name
    submit = [("submit_job", {"command": "sleep 30", "node_name": node, "wait_s": 0})]
    (samples,) = anyio.run(functools.partial(mcp_calls, bl.jexida_config(1), submit, runs, JEXIDA_WARM_ANSIBLE="0",
                                             JEXIDA_NODE_MODULE="shell"))
    before = report.add("7", "submit_job (wait_s=0) until it answers running, shell module, cold Ansible (before)",
                        samples)
    (samples,) = anyio.run(mcp_calls, bl.jexida_config(1), submit, runs)
    row = report.add("7", "submit_job (wait_s=0) until it answers running", samples)
    if "new_ssh" in report.refs:
        new_ssh = report.refs["new_ssh"].median
        report.target("submit_job to running / new ssh connection", f"{before.median / new_ssh:.1f}x (this run)",
                      "<= 1.5x", "", row.median / new_ssh, 1.5, "x")


def case_light(ctx: Context) -> None:
    report, bl, runs = ctx.report, ctx.bl, ctx.runs
    print("case 8: a light command through MCP on an inventory with the controller (local connection)", flush=True)
    entries = yaml.safe_load(bl.registry.read_text())["nodes"][:1]
    entries.append({"name": "controller", "host": "localhost", "tags": ["controller"],
                    "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}})
    registry = bl.work / "nodes-light.yml"
    registry.write_text(yaml.safe_dump({"nodes": entries}))
    config = bl.work / "light.jexida.yml"
    config.write_text(yaml.safe_dump({"plugin": "jexida.cluster.jexida", "nodes_file": str(registry),
                                      "deadline": 30}))
    local = report.add("8", "ls -la run here (subprocess, the old server's way)",
                       measure(lambda: sh(["ls", "-la", str(Path.home())]), runs))
    (samples,) = anyio.run(mcp_calls, config, [("cluster_bash", {"command": "ls -la"})], runs)
    light = report.add("8", "cluster_bash ls -la: light command, on the controller", samples)
    report.notes.append(f"light command through MCP: {light.median * 1000:.0f} ms against {local.median * 1000:.0f} "
                        "ms for a local subprocess (the MCP round trip, the audit and Ansible's local connection)")


def case_memory(ctx: Context) -> None:
    report, bl = ctx.report, ctx.bl
    print("case 6: bridge memory", flush=True)
    config = bl.jexida_config(min(3, len(bl.nodes)))
    idle, growth = anyio.run(mcp_memory, config, bl.nodes[0].name, "seq 1 14000000")
    report.notes.append(f"bridge RSS idle: {idle:.1f} MB; growth while a job printed ~106 MB: {growth:.1f} MB "
                        f"(target <= 30 MB)")
    print(f"  idle {idle:.1f} MB, growth {growth:.1f} MB", flush=True)
