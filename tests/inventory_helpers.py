"""What the inventory plugin's unit tests share: the plugin on a real InventoryData, made-up facts.

The fixtures (``jexida``, ``fake_probe``, ``no_stray_env``) reach the tests as a plugin named in conftest.py.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible_collections.jexida.cluster.plugins.plugin_utils import facts as facts_module
from ansible_collections.jexida.cluster.plugins.plugin_utils import probe as probe_module

import mcp_bridge  # noqa: F401  (the suite's ansible.cfg and Ansible's collection loader, before anything else)

PLUGIN = "jexida.cluster.jexida"


def new_plugin() -> Any:
    plugin = inventory_loader.get(PLUGIN)
    assert plugin is not None, "jexida.cluster.jexida not found: is the collection linked into the venv (make setup)?"
    return plugin


class _PluginAndUtils:
    """The plugin's module with its shared code (plugin_utils facts and probe) in one namespace.

    Names are looked up in the plugin module first; patches go to the plugin module, where
    the plugin looks them up (it imports them by name). monkeypatch undoes a patch on an object
    without an instance __dict__ entry with delattr: that puts the original back."""

    def __init__(self, *modules: ModuleType) -> None:
        object.__setattr__(self, "_modules", modules)
        object.__setattr__(self, "_originals", {})

    def __getattr__(self, name: str) -> Any:
        for module in object.__getattribute__(self, "_modules"):
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        plugin_module = object.__getattribute__(self, "_modules")[0]
        object.__getattribute__(self, "_originals").setdefault(name, getattr(plugin_module, name))
        setattr(plugin_module, name, value)

    def __delattr__(self, name: str) -> None:
        setattr(object.__getattribute__(self, "_modules")[0], name,
                object.__getattribute__(self, "_originals").pop(name))


@pytest.fixture
def jexida() -> Any:
    """The plugin's module (as the plugin loader loaded it) and the plugin_utils it uses."""
    return _PluginAndUtils(sys.modules[type(new_plugin()).__module__], facts_module, probe_module)


def write_config(tmp_path: Path, text: str, name: str = "test.jexida.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def parse(path: Path, cache: bool = True) -> tuple[Any, InventoryData]:
    """What InventoryManager does for one source: parse, then save the cache if it changed."""
    plugin = new_plugin()
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), str(path), cache=cache)
    if plugin.get_option("cache"):
        plugin.update_cache_if_changed()
    return plugin, inventory


def members(inventory: InventoryData, group: str) -> set[str]:
    return {host.name for host in inventory.groups[group].get_hosts()} if group in inventory.groups else set()


def host_vars(inventory: InventoryData, host: str) -> dict[str, Any]:
    return inventory.get_host(host).get_vars()


def made_up_facts(**values: Any) -> dict[str, Any]:
    facts = {
        "reachable": True, "address": None, "probed_at": "2026-01-01T00:00:00Z", "probe_ms": 5, "error": None,
        "os": "linux", "arch": "x86_64", "distribution": "debian", "distribution_version": "12",
        "python_version": "3.11.2", "cpus": 4, "load_1": 0.4, "load_5": 0.4, "load_15": 0.4,
        "load_per_cpu": 0.1, "mem_total_mb": 8000, "mem_available_mb": 6000, "mem_used_pct": 25.0,
        "cpu_busy_pct": 10.0, "disk_free_mb": 10000, "running_jobs": 0, "capabilities": [],
    }
    facts.update(values)
    return facts


@pytest.fixture
def fake_probe(jexida: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[list[str]]]:
    """Replace the network probe with made-up facts per node; returns the list of probe calls."""

    def install(**facts_by_name: dict[str, Any]) -> list[list[str]]:
        calls: list[list[str]] = []

        def probe(targets: Any, settings: Any = None) -> dict[str, dict[str, Any]]:
            calls.append([t.name for t in targets])
            return {t.name: {**jexida.empty_facts(), **facts_by_name.get(t.name, made_up_facts()),
                             "address": t.addresses[0]} for t in targets}

        monkeypatch.setattr(jexida, "probe_nodes", probe)
        return calls

    return install


@pytest.fixture
def no_stray_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The plugin reads these; a developer's shell must not change what the tests see.
    for name in ("JEXIDA_INVENTORY_PROBE", "JEXIDA_INVENTORY_DEADLINE", "ANSIBLE_INVENTORY_CACHE"):
        monkeypatch.delenv(name, raising=False)
    yield
