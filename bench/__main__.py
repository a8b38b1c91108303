"""`make bench`: the suite measured side by side with the tools people would otherwise use.

Each case: one warm-up, then N runs; median, min and max; ratios are taken pair by pair
from the same run. Results go to bench/results/<date>-<host>.md.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import yaml

import jexida_lab as lab
from bench.case_exec_node import case_exec_node
from mcp_bridge import routing, settings
from mcp_bridge.paths import state_dir

REPO_ROOT = Path(__file__).resolve().parent.parent

BIN = Path(sys.executable).parent
BENCH_LAB = "bench"


@dataclass
class Row:
    case: str
    what: str
    samples: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Target:
    metric: str
    before: str
    target: str
    moonshot: str
    value: float
    limit: float
    unit: str

    @property
    def shown(self) -> str:
        return f"{self.value:.2f}{self.unit}" if self.unit == "x" else f"{self.value:.2f} {self.unit}"

    @property
    def met(self) -> bool:
        return self.value <= self.limit


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    ratios: list[tuple[str, str, float, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    refs: dict[str, Row] = field(default_factory=dict)

    def target(self, metric: str, before: str, target: str, moonshot: str, value: float, limit: float,
               unit: str) -> None:
        self.targets.append(Target(metric, before, target, moonshot, value, limit, unit))
        print(f"  target {metric}: {self.targets[-1].shown} ({'met' if value <= limit else 'missed'}, "
              f"target {target})", flush=True)

    def add(self, case: str, what: str, samples: list[float], note: str = "") -> Row:
        row = Row(case, what, samples, note)
        self.rows.append(row)
        print(f"  {case:<4} {what:<58} median {row.median * 1000:9.1f} ms  "
              f"(min {min(samples) * 1000:.1f}, max {max(samples) * 1000:.1f}, n={len(samples)}) {note}", flush=True)
        return row

    def ratio(self, label: str, numerator: Row, denominator: Row, target: str = "") -> None:
        value = numerator.median / denominator.median
        self.ratios.append((label, f"{numerator.what} / {denominator.what}", value, target))
        print(f"  ratio {label}: {value:.2f} {target}", flush=True)


def measure(action: Callable[[], Any], runs: int) -> list[float]:
    action()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def sh(argv: list[str], env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-1000:]} {proc.stdout[-1000:]}")
    return proc


def base_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_DEPRECATION_WARNINGS": "false"}
    env.update(extra)
    return env


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the lab ------------------------------------------------------------------------------


@dataclass
class BenchLab:
    status: lab.LabStatus
    registry: Path
    key: str
    known_hosts: str
    work: Path
    memory_mb_per_node: float

    @property
    def nodes(self) -> list[lab.LabNode]:
        return self.status.nodes

    def ssh_opts(self) -> list[str]:
        return ["-i", self.key, "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes"]

    def static_inventory(self, count: int) -> Path:
        """A plain YAML inventory (no probing) for the first `count` nodes, as jexida workers."""
        path = self.work / f"static-{count}.yml"
        hosts = {n.name: {"ansible_host": n.address, "ansible_port": n.port} for n in self.nodes[:count]}
        path.write_text(yaml.safe_dump({"all": {"vars": {
            "ansible_user": "jexida", "ansible_ssh_private_key_file": self.key,
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes",
            "ansible_python_interpreter": "/usr/bin/python3"}, "hosts": hosts}}))
        return path

    def jexida_config(self, count: int, **options: Any) -> Path:
        """A jexida inventory config over the first `count` registered nodes."""
        entries = yaml.safe_load(self.registry.read_text())["nodes"]
        names = {n.name for n in self.nodes[:count]}
        registry = self.work / f"nodes-{count}.yml"
        registry.write_text(yaml.safe_dump({"nodes": [e for e in entries if e["name"] in names]}))
        path = self.work / f"n{count}{'-cached' if options.get('cache') else ''}.jexida.yml"
        path.write_text(yaml.safe_dump({"plugin": "jexida.cluster.jexida", "nodes_file": str(registry),
                                        "deadline": 30, **options}))
        return path


def bring_up(count: int) -> BenchLab:
    before = mem_available_mb()
    print(f"bench: lab of {count} nodes", flush=True)
    status = lab.up(BENCH_LAB, nodes=count)
    time.sleep(1)
    per_node = max(0.0, before - mem_available_mb()) / count
    work = state_dir() / "bench"
    work.mkdir(parents=True, exist_ok=True)
    registry = work / "nodes.yml"
    print(f"bench: bootstrapping {count} nodes with playbooks/bootstrap.yml", flush=True)
    sh(["ansible-playbook", "-i", status.inventory, "playbooks/bootstrap.yml", "-f", "50",
        "-e", f"jexida_registry={registry}"], env=base_env())
    return BenchLab(status=status, registry=registry, key=str(state_dir() / "controller_ed25519"),
                    known_hosts=str(state_dir() / "known_hosts"), work=work, memory_mb_per_node=per_node)


# --- MCP client helpers -------------------------------------------------------------------


async def mcp_calls(config: Path, calls: list[tuple[str, dict[str, Any]]], runs: int,
                    **env: str) -> list[list[float]]:
    """Time each call (warm-up + runs) inside ONE MCP session, like an agent's conversation."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=str(BIN / "jexida"), args=["serve", "--inventory", str(config)],
                                   env=base_env(**env))
    timings: list[list[float]] = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("list_worker_nodes", {})
        await anyio.sleep(2)  # a session lasts long: let the warm Ansible finish importing, as it would
        for name, arguments in calls:
            samples = []
            for index in range(runs + 1):
                started = time.perf_counter()
                result = await session.call_tool(name, arguments)
                elapsed = time.perf_counter() - started
                if result.is_error:
                    raise RuntimeError(f"{name} failed: {result.content}")
                if index:
                    samples.append(elapsed)
            timings.append(samples)
    return timings


async def mcp_memory(config: Path, node: str, big_command: str) -> tuple[float, float]:
    """The bridge's idle RSS and its peak growth while a job prints a lot (MB)."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=str(BIN / "jexida"), args=["serve", "--inventory", str(config)],
                                   env=base_env())
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("cluster_status", {})
        pid = int(sh(["pgrep", "-f", f"serve --inventory {config}"]).stdout.split()[0])

        def rss() -> float:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
            return 0.0

        idle = rss()
        peak = [idle]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                peak.append(rss())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = await session.call_tool("submit_job", {"command": big_command, "node_name": node, "wait_s": 120})
        await session.call_tool("job_output", {"job_id": (result.structured_content or {})["job_id"], "tail": 5})
        stop.set()
        sampler.join()
        return idle, max(peak) - idle


# --- the cases ----------------------------------------------------------------------------


def case_one_command(report: Report, bl: BenchLab, runs: int) -> None:
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
    levers(report, bl, runs)
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


def levers(report: Report, bl: BenchLab, runs: int) -> None:
    """The execution layer alone (no MCP), one node, each lever of issue 12 on and off."""
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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def case_fan_out(report: Report, bl: BenchLab, runs: int, sizes: list[int]) -> None:
    print(f"case 2: one command on N nodes, N in {sizes}", flush=True)
    broadcast: dict[int, Row] = {}
    clush_rows: dict[int, Row] = {}
    for count in sizes:
        clush: Row | None = None
        nodes = bl.nodes[:count]
        hosts_file = bl.work / f"hosts-{count}.txt"
        hosts_file.write_text("\n".join(n.address for n in nodes) + "\n")
        ssh_args = " ".join(bl.ssh_opts())
        if shutil.which("parallel-ssh"):
            report.add("2", f"pssh (parallel-ssh), N={count}", measure(
                lambda hf=hosts_file, sa=ssh_args: sh(["parallel-ssh", "-h", str(hf), "-l", "jexida", "-p", "50",
                                                       "-x", sa, "true"]), runs))
        if shutil.which("clush"):
            clush = report.add("2", f"clush (ClusterShell), N={count}", measure(
                lambda ns=nodes, sa=ssh_args: sh(["clush", "-w", ",".join(n.address for n in ns), "-l", "jexida",
                                                  "-f", "50", "-o", sa, "true"]), runs))
        static = str(bl.static_inventory(count))
        report.add("2", f"ansible -m command, suite cfg, N={count}", measure(
            lambda st=static: sh(["ansible", "-i", st, "all", "-m", "ansible.builtin.command", "-a", "true",
                                  "-f", "50"], env=base_env(ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"))), runs))
        if count == max(sizes):
            (samples,) = anyio.run(functools.partial(mcp_calls, bl.jexida_config(count), [
                ("cluster_broadcast", {"command": "true", "pattern": "all"})], runs, JEXIDA_WARM_ANSIBLE="0",
                JEXIDA_NODE_MODULE="shell"))
            report.add("2", f"cluster_broadcast via MCP, shell module, cold Ansible (before), N={count}", samples)
            (samples,) = anyio.run(functools.partial(mcp_calls, bl.jexida_config(count), [
                ("cluster_broadcast", {"command": "true", "pattern": "all"})], runs, JEXIDA_WARM_ANSIBLE="0"))
            report.add("2", f"cluster_broadcast via MCP, raw, cold Ansible, N={count}", samples)
        (samples,) = anyio.run(mcp_calls, bl.jexida_config(count),
                               [("cluster_broadcast", {"command": "true", "pattern": "all"})], runs)
        broadcast[count] = report.add("2", f"cluster_broadcast via MCP, N={count}", samples)
        if clush is not None:
            clush_rows[count] = clush
    if len(broadcast) > 1:
        largest = max(broadcast)
        report.ratio(f"broadcast N={largest} / N=1", broadcast[largest], broadcast[min(broadcast)], "(target <= 3)")
    largest = max(broadcast)
    if largest in clush_rows:
        report.target(f"cluster_broadcast N={largest} / clush N={largest}", "2.7x", "<= 1.5x", "<= 1.0x",
                      broadcast[largest].median / clush_rows[largest].median, 1.5, "x")


def case_facts(report: Report, bl: BenchLab, runs: int, sizes: list[int]) -> None:
    print(f"case 3: facts for N in {sizes}", flush=True)
    for count in sizes:
        static = str(bl.static_inventory(count))
        setup = report.add("3", f"ansible all -m setup, N={count}", measure(
            lambda st=static: sh(["ansible", "-i", st, "all", "-m", "ansible.builtin.setup", "-f", "50"],
                                 env=base_env(ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"))), runs))
        cache_dir = bl.work / f"inv-cache-{count}"
        config = bl.jexida_config(count, cache=True, cache_plugin="ansible.builtin.jsonfile",
                                  cache_connection=str(cache_dir), cache_timeout=3600)
        cold = report.add("3", f"jexida inventory, cold (--flush-cache), N={count}", measure(
            lambda c=config: sh(["ansible-inventory", "-i", str(c), "--list", "--flush-cache"], env=base_env()),
            runs))
        cached = report.add("3", f"jexida inventory, cached, N={count}", measure(
            lambda c=config: sh(["ansible-inventory", "-i", str(c), "--list"], env=base_env()), runs))
        from mcp_bridge.nodes import load_snapshot

        in_process = report.add("3", f"jexida inventory, cached, parsed in process (as the bridge), N={count}",
                                measure(lambda c=config: load_snapshot(str(c), use_cache=True), runs))
        report.ratio(f"setup / jexida cold, N={count}", setup, cold, "(target >= 10)" if count >= 50 else "")
        report.notes.append(f"cached jexida inventory, N={count}: {cached.median:.3f} s through the "
                            f"ansible-inventory CLI (its own start-up included), {in_process.median:.3f} s parsed "
                            f"in process (target < 0.3 s)")


def case_parallel(report: Report, bl: BenchLab, runs: int) -> None:
    count = min(5, len(bl.nodes))
    print(f"case 4: parallel_execute of 20 x sleep 1 over {count} nodes", flush=True)
    (samples,) = anyio.run(mcp_calls, bl.jexida_config(count),
                           [("parallel_execute", {"commands": ["sleep 1"] * 20})], runs)
    # All 20 run at once (one Ansible run, one fork per command): the ideal is the 1 s of one sleep.
    # (The row used to say "ideal 4 s", 20 / nodes; the 4.34 s measured then was mostly the shell
    # module's Python starting 20 times on nodes that share this machine's cores.)
    row = report.add("4", f"parallel_execute 20 x sleep 1, {count} nodes", samples)
    report.notes.append(f"parallel_execute: {row.median:.2f} s; all 20 commands run at once, so the ideal is "
                        f"1 s ({row.median:.2f}x)")
    if count == 5:
        report.target("parallel_execute 20 x sleep 1 over 5 nodes", "4.34 s", "<= 4.2 s", "4.05 s", row.median,
                      4.2, "s")


def case_job(report: Report, bl: BenchLab, runs: int) -> None:
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


def case_light(report: Report, bl: BenchLab, runs: int) -> None:
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


def case_mitogen(report: Report, bl: BenchLab, runs: int, venv: Path, sizes: list[int]) -> None:
    """Lever 3 (not adopted, see SPEED_README_SECTION.md): Ansible's own linear strategy against
    mitogen_linear, ad-hoc raw, from a venv with mitogen installed."""
    print(f"case 9: mitogen_linear vs linear (venv {venv}), N in {sizes}", flush=True)
    strategy = next(venv.glob("lib/python*/site-packages/ansible_mitogen/plugins/strategy"), None)
    if strategy is None:
        report.notes.append(f"mitogen: no ansible_mitogen in {venv}, not measured")
        return
    base_cfg = (REPO_ROOT / "ansible.cfg").read_text()
    cfg = bl.work / "ansible-mitogen.cfg"
    cfg.write_text(base_cfg.replace("[defaults]", f"[defaults]\nstrategy_plugins = {strategy}\n"
                                                  "strategy = mitogen_linear", 1))
    for count in sizes:
        static = str(bl.static_inventory(count))
        for name, config in (("linear", REPO_ROOT / "ansible.cfg"), ("mitogen_linear", cfg)):
            try:
                report.add("9", f"{venv.name}: ansible -m raw -a true, {name}, N={count}", measure(
                    lambda st=static, c=config: sh([str(venv / "bin" / "ansible"), "-i", st, "all", "-m",
                                                    "ansible.builtin.raw", "-a", "true", "-f", "50"],
                                                   env=base_env(ANSIBLE_CONFIG=str(c))), runs))
            except RuntimeError as exc:
                report.notes.append(f"mitogen case {name}, N={count} failed: {str(exc)[:300]}")


def case_routing(report: Report, runs: int) -> None:
    print("case 5: routing decision with cached facts (in process)", flush=True)
    nodes = [routing.NodeView(name=f"node{i:02d}", active=True, tags=("docker",) if i % 2 else ("gpu",), facts={
        "reachable": True, "os": "linux", "arch": "x86_64", "cpus": 8, "load_1": (i % 7) / 2, "load_per_cpu":
        (i % 7) / 16, "mem_used_pct": 30 + i % 40, "running_jobs": i % 3, "load_group": "normal",
        "capabilities": []}) for i in range(50)]
    requirements = routing.Requirements(os="linux", tags=("docker",))
    loops = 200
    samples = [timeit.timeit(lambda: routing.choose_node(requirements, nodes, {"node03": 2}), number=loops) / loops
               for _ in range(max(runs, 5))]
    row = report.add("5", "routing.choose_node, 50 nodes", samples)
    report.notes.append(f"routing decision: {row.median * 1000:.3f} ms (target <= 5 ms)")
    light = frozenset(settings.LIGHT_COMMANDS)
    for command in ("ls -la", "make -j8"):
        samples = [timeit.timeit(lambda c=command: routing.choose_for_command(c, routing.Requirements(), nodes,
                                                                              {"node03": 2}, light),
                                 number=loops) / loops for _ in range(max(runs, 5))]
        report.add("5", f"routing.choose_for_command ({command}), 50 nodes (cluster_bash's path)", samples)


def case_memory(report: Report, bl: BenchLab) -> None:
    print("case 6: bridge memory", flush=True)
    config = bl.jexida_config(min(3, len(bl.nodes)))
    idle, growth = anyio.run(mcp_memory, config, bl.nodes[0].name, "seq 1 14000000")
    report.notes.append(f"bridge RSS idle: {idle:.1f} MB; growth while a job printed ~106 MB: {growth:.1f} MB "
                        f"(target <= 30 MB)")
    print(f"  idle {idle:.1f} MB, growth {growth:.1f} MB", flush=True)


# --- report -------------------------------------------------------------------------------


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) / 1024 / 1024
    import ansible

    return (f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.platform()}, "
            f"Python {platform.python_version()}, ansible-core {ansible.__version__}")


def write_report(report: Report, bl: BenchLab, runs: int, quick: bool) -> Path:
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{time.strftime('%Y-%m-%d')}-{platform.node()}{'-quick' if quick else ''}.md"
    lines = [f"# jexida-cluster bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"Machine: {machine()}", "",
             f"Lab: {len(bl.nodes)} podman nodes (Debian 12, sshd), about {bl.memory_mb_per_node:.1f} MB of "
             f"host memory each ({bl.memory_mb_per_node * 50:.0f} MB for 50). Each case: one warm-up, then "
             f"{runs} runs. Times in ms.", "",
             "| case | what | median | min | max | runs |", "|---|---|---:|---:|---:|---:|"]
    for row in report.rows:
        lines.append(f"| {row.case} | {row.what} | {row.median * 1000:.1f} | {min(row.samples) * 1000:.1f} | "
                     f"{max(row.samples) * 1000:.1f} | {len(row.samples)} |")
    lines += ["", "## Ratios (same run)", "", "| ratio | of | value | target |", "|---|---|---:|---|"]
    lines += [f"| {label} | {of} | {value:.2f} | {target} |" for label, of, value, target in report.ratios]
    if report.targets:
        lines += ["", "## Issue 12 targets (this run)", "", "| metric | before | target | moonshot | now | |",
                  "|---|---|---|---|---:|---|"]
        lines += [f"| {t.metric} | {t.before} | {t.target} | {t.moonshot} | {t.shown} | "
                  f"{'met' if t.met else 'missed'} |" for t in report.targets]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 nodes, 3 runs, a subset (under 2 minutes)")
    parser.add_argument("--nodes", type=int, default=50, help="lab size for the full run (default 50)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep-lab", action="store_true", help="leave the bench lab up afterwards")
    parser.add_argument("--mitogen-venv", type=Path, default=os.environ.get("JEXIDA_BENCH_MITOGEN_VENV") or None,
                        help="a venv with mitogen: adds lever 3's rows, not adopted (env JEXIDA_BENCH_MITOGEN_VENV)")
    args = parser.parse_args()
    count = 3 if args.quick else args.nodes
    runs = 3 if args.quick else max(args.runs, 5)
    bl = bring_up(count)
    report = Report()
    try:
        case_one_command(report, bl, runs)
        case_fan_out(report, bl, runs, [1, count] if args.quick else [n for n in (1, 10, 50) if n <= count])
        if not args.quick:
            case_facts(report, bl, runs, [n for n in (10, 50) if n <= count])
        case_parallel(report, bl, runs)
        case_job(report, bl, runs)
        case_light(report, bl, runs)
        case_routing(report, runs)
        if not args.quick:
            case_exec_node(report, runs)  # its own small lab (bench/case_exec_node.py)
        if not args.quick:
            case_memory(report, bl)
        if args.mitogen_venv:
            case_mitogen(report, bl, runs, args.mitogen_venv, [n for n in (10, 50) if n <= count] or [count])
    finally:
        path = write_report(report, bl, runs, args.quick)
        print(f"\nbench: results in {path.relative_to(REPO_ROOT)}")
        if not args.keep_lab:
            lab.down(BENCH_LAB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
