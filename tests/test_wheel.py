"""The wheel is the whole product: installed with pipx outside the checkout, it works as a new
person would use it, with HOME and the XDG folders in a temp dir and nothing of the checkout
on PATH or the Python path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import yaml
from conftest import REPO_ROOT
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

import jexida_lab as lab

pytestmark = pytest.mark.integration
WHEEL_LAB = "pytest-wheel"


@dataclass
class Installed:
    bin: Path
    home: Path
    elsewhere: Path  # an unrelated working folder

    def env(self) -> dict[str, str]:
        # Nothing from the test run: no venv on PATH, no XDG or JEXIDA_* variables. One ANSIBLE_* one:
        # tasks on the controller (the playbook's registration) put Ansible's remote_tmp in the passwd
        # entry's home, not in HOME; '$HOME/.ansible/tmp' keeps this person's in their temp home.
        return {"HOME": str(self.home), "PATH": f"{self.bin}:/usr/bin:/bin", "LANG": "C.UTF-8",
                "ANSIBLE_REMOTE_TMP": "$HOME/.ansible/tmp"}

    def run(self, *argv: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*argv], cwd=self.elsewhere, env=self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    @property
    def config(self) -> Path:
        return self.home / ".config" / "jexida"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    wheels = work / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), "."],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(wheels.glob("jexida_cluster-*.whl"))
    env = {**os.environ, "PIPX_HOME": str(work / "pipx"), "PIPX_BIN_DIR": str(work / "bin"),
           "PIPX_MAN_DIR": str(work / "man")}
    pipx = subprocess.run([str(Path(sys.executable).parent / "pipx"), "install", "--include-deps", str(wheel)],
                          cwd=work, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert pipx.returncode == 0, pipx.stdout[-2000:] + pipx.stderr[-2000:]
    (work / "home").mkdir()
    (work / "elsewhere").mkdir()
    return Installed(bin=work / "bin", home=work / "home", elsewhere=work / "elsewhere")


@pytest.fixture(scope="module")
def wheel_lab() -> Iterator[lab.LabStatus]:
    status = lab.up(WHEEL_LAB, nodes=1)
    yield status
    lab.down(WHEEL_LAB)


def test_init_twice_changes_nothing(installed: Installed) -> None:
    first = installed.run("jexida", "init")
    assert first.returncode == 0, first.stderr
    made = {p: p.read_bytes() for p in installed.config.iterdir()}
    assert {p.name for p in made} == {"cluster.jexida.yml", "nodes.yml"}
    assert "claude mcp add jexida -- " in first.stdout and f"{installed.bin}/jexida serve" in first.stdout
    key = installed.home / ".local" / "state" / "jexida" / "controller_ed25519"
    assert key.is_file() and oct(key.stat().st_mode & 0o777) == "0o600"
    (installed.config / "nodes.yml").write_text((installed.config / "nodes.yml").read_text() + "# my note\n")
    edited = (installed.config / "nodes.yml").read_bytes()
    second = installed.run("jexida", "init", "--json")
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["created"] == [] and len(report["kept"]) == 4
    assert (installed.config / "nodes.yml").read_bytes() == edited  # a person's edit survives
    assert (installed.config / "cluster.jexida.yml").read_bytes() == made[installed.config / "cluster.jexida.yml"]


def test_status_run_and_ansible_from_anywhere(installed: Installed) -> None:
    installed.run("jexida", "init")
    status = installed.run("jexida", "status", "--json")
    assert status.returncode == 0, status.stderr
    nodes = {n["name"]: n for n in json.loads(status.stdout)["nodes"]}
    assert nodes["controller"]["facts"]["reachable"] is True
    ran = installed.run("jexida", "run", "echo ok")
    assert ran.returncode == 0 and ran.stdout.strip() == "ok", ran.stderr
    graph = installed.run("ansible-inventory", "-i", str(installed.config / "cluster.jexida.yml"), "--graph")
    assert graph.returncode == 0 and "@tag_controller:" in graph.stdout, graph.stderr
    for kind, name in (("inventory", "jexida.cluster.jexida"), ("role", "jexida.cluster.jexida_worker")):
        doc = installed.run("ansible-doc", "-t", kind, name)
        assert doc.returncode == 0 and "site-packages/ansible_collections/jexida/cluster" in doc.stdout, doc.stderr


def test_an_mcp_session_over_stdio(installed: Installed) -> None:
    installed.run("jexida", "init")

    async def session() -> tuple[set[str], dict[str, object]]:
        params = StdioServerParameters(command=str(installed.bin / "jexida"), args=["serve"], env=installed.env(),
                                       cwd=str(installed.elsewhere))
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            tools = {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool("cluster_bash", {"command": "echo mcp-ok"})
            assert not result.is_error, result.content
            assert result.structured_content is not None
            return tools, result.structured_content

    tools, result = anyio.run(session)
    assert {"cluster_bash", "offload_to", "submit_job", "cluster_status"} <= tools
    assert result["stdout"].strip() == "mcp-ok" and result["node"] == "controller"


def test_bootstrap_a_lab_node_with_the_installed_playbook(installed: Installed, wheel_lab: lab.LabStatus) -> None:
    """The README's path: an inventory with admin access -> ansible-playbook jexida.cluster.bootstrap."""
    installed.run("jexida", "init")
    node = wheel_lab.nodes[0]
    played = installed.run("ansible-playbook", "-i", wheel_lab.inventory, "jexida.cluster.bootstrap",
                           "-e", "jexida_tags=wheel", timeout=900)
    assert played.returncode == 0, played.stdout[-3000:] + played.stderr[-2000:]
    assert f"{node.name}: worker ready" in played.stdout
    registry = yaml.safe_load((installed.config / "nodes.yml").read_text())
    entry = next(n for n in registry["nodes"] if n["name"] == node.name)
    assert entry["user"] == "jexida" and entry["tags"] == ["wheel"]
    assert entry["vars"]["jexida_worker_job_dir"] == "/opt/jexida-jobs"
    ran = installed.run("jexida", "run", "id -un", "--node", node.name)
    assert ran.returncode == 0 and ran.stdout.strip() == "jexida", ran.stderr
