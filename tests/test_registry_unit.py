"""The node registry file and the node_registry module: writes that lose nothing, errors that name the field."""

from __future__ import annotations

import multiprocessing
import subprocess
import threading
import time
from pathlib import Path

import pytest
from ansible_collections.jexida.cluster.plugins.module_utils import registry
from conftest import REPO_ROOT, ansible_cli

# --- the registry -----------------------------------------------------------------------------


def test_registry_upsert_adds_then_updates_and_never_duplicates(tmp_path: Path) -> None:
    path = str(tmp_path / "deep" / "dir" / "nodes.yml")
    assert registry.load_registry(path) == []
    changed, node = registry.upsert_node(path, {"name": "gpu1", "host": "127.0.0.71", "tags": ["gpu"]})
    assert changed and node == {"name": "gpu1", "host": "127.0.0.71", "port": 22, "user": "jexida",
                                "tags": ["gpu"], "active": True, "vars": {}, "fallback_hosts": []}
    assert registry.upsert_node(path, {"name": "gpu1", "host": "127.0.0.71"}) == (False, node)
    changed, node = registry.upsert_node(path, {"name": "gpu1", "port": 2222})
    assert changed and node["port"] == 2222 and node["tags"] == ["gpu"]  # fields not given are kept
    registry.upsert_node(path, {"name": "cpu1"})
    nodes = registry.load_registry(path)
    assert [n["name"] for n in nodes] == ["gpu1", "cpu1"]
    text = Path(path).read_text()
    assert text.startswith(registry.HEADER) and text.count("name: gpu1") == 1
    assert registry.remove_node(path, "gpu1") is True
    assert registry.remove_node(path, "gpu1") is False
    assert [n["name"] for n in registry.load_registry(path)] == ["cpu1"]
    assert registry.remove_node(str(tmp_path / "nope" / "nodes.yml"), "x") is False
    assert not (tmp_path / "nope").exists()


def test_registry_dry_run_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "nodes.yml"
    assert registry.upsert_node(str(path), {"name": "a"}, dry_run=True)[0] is True
    assert not path.parent.exists()


def test_registry_output_passes_yamllint(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yml"
    registry.upsert_node(str(path), {"name": "a", "tags": ["x", "yes"], "vars": {"k": "on"},
                                     "fallback_hosts": ["127.0.0.9"]})
    lint = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "yamllint"), "-s", "-c", str(REPO_ROOT / ".yamllint"),
                           str(path)], capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout
    assert registry.load_registry(str(path))[0]["tags"] == ["x", "yes"]


def _upsert_many(path: str, worker: int, count: int) -> None:
    for i in range(count):
        registry.upsert_node(path, {"name": f"w{worker}-n{i}", "tags": [f"w{worker}"]})


def test_concurrent_upserts_from_processes_and_threads_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "nodes.yml")
    stop = threading.Event()
    read_errors: list[Exception] = []

    def reader() -> None:  # a reader never sees a half-written file
        while not stop.is_set():
            try:
                registry.load_registry(path)
            except Exception as exc:
                read_errors.append(exc)
            time.sleep(0.005)

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_upsert_many, args=(path, w, 12)) for w in range(5)]
        threads = [threading.Thread(target=_upsert_many, args=(path, 100 + w, 12)) for w in range(3)]
        for worker in [*procs, *threads]:
            worker.start()
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0
        for thread in threads:
            thread.join(60)
    finally:
        stop.set()
        watcher.join()
    names = [n["name"] for n in registry.load_registry(path)]
    assert len(names) == len(set(names)) == 8 * 12
    assert read_errors == []
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nodes.yml"
    registry.upsert_node(str(path), {"name": "a"})
    before = path.read_text()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(registry.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        registry.upsert_node(str(path), {"name": "b"})
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.yml", "nodes.yml.lock"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("# only a comment\n", None),
        ("nodes: [\n", ["malformed YAML"]),
        ("- name: a\n", ["must be a mapping"]),
        ("nodes: {name: a}\n", ["'nodes' must be a list"]),
        ("nodes:\n  - name: a\n  - name: gpu1\n    tags: 3\n", ["node #2 ('gpu1')", "'tags' must be a list of strings",
                                                               "got int"]),
        ("nodes:\n  - name: a\n    active: maybe\n", ["node #1 ('a')", "'active'"]),
        ("nodes:\n  - {name: a, fallback_hosts: a.lan}\n", ["'fallback_hosts'"]),
        ("nodes: []\nextra: 1\n", ["'extra'"]),
    ],
)
def test_registry_loading(tmp_path: Path, text: str, expected: list[str] | None) -> None:
    path = tmp_path / "nodes.yml"
    path.write_text(text)
    if expected is None:
        assert registry.load_registry(str(path)) == []
        return
    with pytest.raises(registry.RegistryError) as err:
        registry.load_registry(str(path))
    assert str(err.value).startswith(f"{path}: ")
    for part in expected:
        assert part in str(err.value)


def test_upsert_errors_name_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yml"
    with pytest.raises(registry.RegistryError, match=r"nodes\.yml: node 'a': 'port' must be an integer"):
        registry.upsert_node(str(path), {"name": "a", "port": "22x"})
    assert not path.exists()



def test_node_registry_module_through_ansible(tmp_path: Path) -> None:
    path = tmp_path / "reg" / "nodes.yml"
    module_args = f"path={path} name=gpu1 host=127.0.0.81 port=2222 tags=gpu,fast fallback_hosts=127.0.0.82"
    runs = [ansible_cli("ansible", "localhost", "-o", "-m", "jexida.cluster.node_registry", "-a", module_args)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
    assert "CHANGED" in runs[0].stdout and '"changed": true' in runs[0].stdout
    assert "SUCCESS" in runs[1].stdout and '"changed": false' in runs[1].stdout
    assert registry.load_registry(str(path)) == [{
        "name": "gpu1", "host": "127.0.0.81", "port": 2222, "user": "jexida", "tags": ["gpu", "fast"],
        "active": True, "vars": {}, "fallback_hosts": ["127.0.0.82"]}]

    check = ansible_cli("ansible", "localhost", "-o", "--check", "-m", "jexida.cluster.node_registry",
                        "-a", f"path={path} name=gpu1 state=absent")
    assert check.returncode == 0 and "CHANGED" in check.stdout
    assert len(registry.load_registry(str(path))) == 1  # check mode wrote nothing

    bad = ansible_cli("ansible", "localhost", "-o", "-m", "jexida.cluster.node_registry",
                      "-a", f"path={path} name=gpu1 port=70000")
    assert bad.returncode != 0 and f"{path}: node 'gpu1': 'port'" in bad.stdout
