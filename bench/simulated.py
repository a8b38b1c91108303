"""The bridge's own work at N nodes, in process, with no lab: synthetic registries, cached facts and
an ansible-runner stand-in that answers every host at once. What is left is exactly our code (and
Ansible's inventory), so a cost that grows faster than N shows here.

Used by the bench (case 11) and by hand: ``python -m bench.simulated 10 100 1000`` prints the
timings, ``--profile N`` a cProfile of each piece at N.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from mcp_bridge import routing

CONNECTION = {"ansible_ssh_private_key_file": "/nonexistent/key", "ansible_python_interpreter": "/usr/bin/python3"}


def node_facts(i: int) -> dict[str, Any]:
    """Facts as the probe reports them, varied so scores and groups differ from node to node."""
    return {"reachable": True, "address": None, "probed_at": "2026-11-24T00:00:00Z", "probe_ms": 20, "error": None,
            "os": "linux", "arch": "x86_64", "distribution": "debian", "distribution_version": "12",
            "python_version": "3.11.2", "cpus": 8, "load_1": (i % 7) / 2, "load_5": 0.5, "load_15": 0.5,
            "load_per_cpu": round((i % 7) / 16, 2), "mem_total_mb": 16000, "mem_available_mb": 8000,
            "mem_used_pct": 30 + i % 40, "cpu_busy_pct": 10.0, "disk_free_mb": 50000, "running_jobs": i % 3,
            "capabilities": ["docker"] if i % 2 else []}


def node_views(count: int) -> list[routing.NodeView]:
    return [routing.NodeView(name=f"node{i:05d}", active=True, tags=("docker",) if i % 2 else ("gpu",),
                             facts={**node_facts(i), "load_group": "normal"}) for i in range(count)]


def registry_entries(count: int) -> list[dict[str, Any]]:
    # Addresses in 127.0.0.0/8 only, and never contacted: the probe is replaced below.
    return [{"name": f"node{i:05d}", "host": f"127.1.{i // 250}.{i % 250 + 1}", "port": 22, "user": "jexida",
             "tags": ["docker" if i % 2 else "gpu", f"rack{i % 10}"], "vars": dict(CONNECTION)} for i in range(count)]


@contextlib.contextmanager
def fake_probe() -> Iterator[list[int]]:
    """The inventory plugin's probe answers from node_facts(); yields [nodes probed] to check the cache."""
    import importlib

    from mcp_bridge import nodes  # noqa: F401  (installs the collection loader)

    plugin = importlib.import_module("ansible_collections.jexida.cluster.plugins.inventory.jexida")
    probed = [0]

    def probe_nodes(targets: list[Any], _settings: Any) -> dict[str, dict[str, Any]]:
        probed[0] += len(targets)
        return {t.name: {**node_facts(int(t.name[4:])), "address": t.addresses[0]} for t in targets}

    real = plugin.probe_nodes
    plugin.probe_nodes = probe_nodes
    try:
        yield probed
    finally:
        plugin.probe_nodes = real


def write_inventory(work: Path, count: int) -> Path:
    """A cached jexida inventory config over ``count`` synthetic nodes (the cache filled once)."""
    from mcp_bridge.nodes import load_snapshot

    registry = work / f"nodes-{count}.yml"
    registry.write_text(yaml.safe_dump({"nodes": registry_entries(count)}))
    config = work / f"sim{count}.jexida.yml"
    config.write_text(yaml.safe_dump({"plugin": "jexida.cluster.jexida", "nodes_file": str(registry),
                                      "cache": True, "cache_plugin": "ansible.builtin.jsonfile",
                                      "cache_connection": str(work / f"cache-{count}"), "cache_timeout": 86400}))
    with fake_probe():
        load_snapshot(str(config), use_cache=False)  # probes (fake) and writes the cache
    return config


def _fake_runner_run(**kwargs: Any) -> Any:
    """ansible_runner.run answering every host of the per-call inventory with success, at once."""
    from mcp_bridge.execution_scripts import BEGIN_MARKER, META_MARKER

    handler = kwargs["event_handler"]
    meta = json.dumps({"rc": 0, "stdout_bytes": 3, "stderr_bytes": 0})
    for host in kwargs["inventory"]["all"]["hosts"]:
        handler({"event": "runner_on_ok", "event_data": {"host": host, "res": {
            "rc": 0, "changed": True, "stdout": "ok\n",
            "stderr": f"{BEGIN_MARKER}\n{META_MARKER}{meta}\n"}}})
    return SimpleNamespace(status="successful", rc=0)


@contextlib.contextmanager
def simulated_cluster(work: Path, count: int) -> Iterator[Any]:
    """A Cluster over ``count`` synthetic nodes whose Ansible runs are answered by _fake_runner_run."""
    from mcp_bridge import execution
    from mcp_bridge.config import BridgeConfig
    from mcp_bridge.core import Cluster

    config = write_inventory(work, count)
    home = work / f"home-{count}"
    home.mkdir(exist_ok=True)
    cluster = Cluster(BridgeConfig(inventory=str(config), home=home, policy_file=None))
    cluster.directory.refresh = lambda: cluster.directory.snapshot()  # type: ignore[method-assign]
    real = execution.ansible_runner.run
    execution.ansible_runner.run = _fake_runner_run
    try:
        with fake_probe() as probed:
            cluster.directory._snapshot = __import__("mcp_bridge.nodes", fromlist=["x"]).load_snapshot(
                str(config), use_cache=True)
            if probed[0]:
                raise RuntimeError(f"the cached inventory probed {probed[0]} nodes")
            yield cluster
    finally:
        execution.ansible_runner.run = real


def pieces(work: Path, count: int) -> dict[str, Callable[[], Any]]:
    """What to time at N=count: name -> action."""
    from ansible_collections.jexida.cluster.plugins.module_utils import registry as reg

    from mcp_bridge.nodes import load_snapshot

    views = node_views(count)
    requirements = routing.Requirements(os="linux", tags=("docker",))
    config = write_inventory(work, count)
    stack = contextlib.ExitStack()
    cluster = stack.enter_context(simulated_cluster(work, count))
    registry_file = work / f"nodes-{count}.yml"
    document = yaml.safe_load(registry_file.read_text())
    upsert_file = work / f"upsert-{count}.yml"
    upsert_file.write_text(reg.dump_registry(reg.validate_document(document, "x")))
    commands = ["true"] * count
    actions: dict[str, Callable[[], Any]] = {
        "routing.choose_node": lambda: routing.choose_node(requirements, views, {"node00003": 2}),
        "routing.place_many (N commands)": lambda: routing.place_many(requirements, count, views, {}),
        "inventory parse, cached facts (load_snapshot)": lambda: load_snapshot(str(config), use_cache=True),
        "registry validate_document": lambda: reg.validate_document(document, str(registry_file)),
        "registry upsert_node (one node into N)": lambda: reg.upsert_node(str(upsert_file), {"name": "node00001",
                                                                                              "tags": ["x"]}),
        "host pattern tag_docker:&available": lambda: cluster.directory.match("tag_docker:&available"),
        "cluster_status assembly (no probe)": lambda: cluster.status(fresh=False),
        "broadcast, bridge side (runner answered at once)": lambda: cluster.broadcast("true", "all"),
        "parallel N commands, bridge side": lambda: cluster.parallel(commands),
    }
    actions["_close"] = stack.close
    return actions


def timings(sizes: list[int], repeat: int = 3) -> dict[str, dict[int, float]]:
    """Best of ``repeat`` (after a warm-up) seconds per piece and N."""
    out: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="jexida-sim-") as tmp, _quiet_home(Path(tmp)):
        for count in sizes:
            work = Path(tmp) / f"n{count}"
            work.mkdir()
            actions = pieces(work, count)
            close = actions.pop("_close")
            try:
                for name, action in actions.items():
                    action()
                    best = float("inf")
                    for _ in range(repeat):
                        started = time.perf_counter()
                        action()
                        best = min(best, time.perf_counter() - started)
                    out.setdefault(name, {})[count] = best
            finally:
                close()
    return out


@contextlib.contextmanager
def _quiet_home(tmp: Path) -> Iterator[None]:
    """Audit lines and runner folders of the simulated calls go to a throwaway state folder."""
    saved = os.environ.get("JEXIDA_HOME")
    os.environ["JEXIDA_HOME"] = str(tmp / "state")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("JEXIDA_HOME", None)
        else:
            os.environ["JEXIDA_HOME"] = saved


def main(argv: list[str]) -> int:
    if argv[:1] == ["--profile"]:
        import cProfile
        import pstats

        count = int(argv[1])
        with tempfile.TemporaryDirectory(prefix="jexida-sim-") as tmp, _quiet_home(Path(tmp)):
            actions = pieces(Path(tmp), count)
            close = actions.pop("_close")
            only = argv[2] if len(argv) > 2 else ""
            for name, action in actions.items():
                if only and only not in name:
                    continue
                action()
                profile = cProfile.Profile()
                profile.runcall(action)
                print(f"=== {name}, N={count}")
                pstats.Stats(profile).sort_stats("cumulative").print_stats(18)
            close()
        return 0
    sizes = [int(a) for a in argv] or [10, 100, 1000]
    for name, by_n in timings(sizes).items():
        cells = "  ".join(f"N={n}: {s * 1000:9.2f} ms" for n, s in by_n.items())
        print(f"{name:<52} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
