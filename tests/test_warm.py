"""The warm Ansible (mcp_bridge/warm/) on the controller itself: a local connection, harmless commands only.

Same results as cold, a crash stays in its call, concurrent calls do not mix, a timeout or a
cancel leaves nothing running, a refused configuration and a dead server fall back to cold."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import ansible_runner
import pytest

from mcp_bridge import execution, runner_env, settings
from mcp_bridge.warm import WarmAnsible

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the warm server needs Linux")

LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def wait_ready(warm: WarmAnsible, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while not warm.ready():
        assert time.monotonic() < deadline, "the warm server did not come up"
        time.sleep(0.05)


@pytest.fixture
def warm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[WarmAnsible]:
    server = WarmAnsible(log_path=tmp_path / "warm.log")
    server.start(execution.ansible_envvars())
    wait_ready(server)
    monkeypatch.setattr(runner_env, "warm_server", server)
    yield server
    server.close()


def shell(command: str, timeout_s: int = 30, name: str = "ctl", **kwargs: object) -> execution.RunOutcome:
    return execution.run_shell(nodes={name: LOCAL}, command=command, timeout_s=timeout_s, output_cap=1 << 20,
                               **kwargs)  # type: ignore[arg-type]


def went_warm(outcome: execution.RunOutcome) -> bool:
    return "warm/client.py" in " ".join(json.loads((Path(outcome.artifact_dir) / "command").read_text())["command"])


def events(outcome: execution.RunOutcome) -> list[str]:
    folder = Path(outcome.artifact_dir) / "job_events"
    loaded = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return [e["event"] for e in sorted(loaded, key=lambda e: e["counter"])]


def calls_of(warm: WarmAnsible) -> list[int]:
    """The calls' Ansible processes: session leaders below the server (server -> supervisor -> call)."""
    pid = warm.server_pid()
    assert pid is not None
    found = []
    for supervisor in manager_children(pid):
        found += [p for p in manager_children(supervisor) if os.getsid(p) == p]
    return found


def manager_children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_warm_results_are_the_cold_results(warm: WarmAnsible, monkeypatch: pytest.MonkeyPatch) -> None:
    command = "echo out; echo '{{ x }}'; echo err >&2; exit 3"
    hot = shell(command)
    monkeypatch.setattr(runner_env, "warm_server", None)
    cold = shell(command)
    assert went_warm(hot) and not went_warm(cold)
    for outcome in (hot, cold):
        outcome.hosts["ctl"].result.pop("ssh_notes", None)
    assert hot.hosts == cold.hosts
    assert (hot.runner_status, hot.runner_rc) == (cold.runner_status, cold.runner_rc) == ("failed", 2)
    assert events(hot) == events(cold)
    assert (Path(hot.artifact_dir) / "stdout").read_text().strip() and (Path(hot.artifact_dir) / "rc").exists()


def test_a_crashing_call_does_not_affect_the_next(warm: WarmAnsible) -> None:
    crashed: dict[str, execution.RunOutcome] = {}
    thread = threading.Thread(target=lambda: crashed.update(o=shell("sleep 3; echo late", timeout_s=10)))
    thread.start()
    deadline = time.monotonic() + 10
    while not (victims := calls_of(warm)):
        assert time.monotonic() < deadline, "the call never started"
        time.sleep(0.05)
    os.kill(victims[0], signal.SIGSEGV)
    thread.join()
    assert crashed["o"].runner_status == "failed" and "ctl" not in crashed["o"].hosts
    after = shell("echo fine")
    assert went_warm(after) and after.hosts["ctl"].stdout == "fine"
    assert warm.server_pid() is not None


def test_concurrent_calls_do_not_mix(warm: WarmAnsible) -> None:
    outcomes: dict[int, execution.RunOutcome] = {}

    def one(index: int) -> None:
        outcomes[index] = shell(f"sleep 0.$((RANDOM % 5)); echo call-{index}", name=f"ctl{index}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == list(range(8)), "a call raised instead of answering"
    for index, outcome in outcomes.items():
        assert went_warm(outcome)
        assert list(outcome.hosts) == [f"ctl{index}"]
        assert outcome.hosts[f"ctl{index}"].stdout == f"call-{index}"


def test_a_timeout_or_a_cancel_leaves_nothing_running(warm: WarmAnsible) -> None:
    started = time.monotonic()
    timed_out = shell("sleep 42.25", timeout_s=1)
    assert timed_out.hosts["ctl"].status == "timeout" and time.monotonic() - started < 4
    started = time.monotonic()
    canceled = shell("sleep 42.5", timeout_s=60, give_up=lambda: time.monotonic() - started > 1)
    assert canceled.runner_status == "canceled" and time.monotonic() - started < 3
    time.sleep(0.5)
    # The canceled call's Ansible, its worker and the command (the node is this machine) are gone.
    assert calls_of(warm) == []
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).startswith("sleep 42.")]


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def test_a_call_with_another_configuration_runs_cold(warm: WarmAnsible, tmp_path: Path) -> None:
    kwargs = warm.runner_kwargs(execution.ansible_envvars(), "ansible.builtin.raw", "echo {{ 6 * 7 }}", "all")
    assert kwargs is not None
    kwargs["envvars"] = {**kwargs["envvars"], "ANSIBLE_TIMEOUT": "17", "JEXIDA_WARM_DEBUG": "1"}
    runner = ansible_runner.run(private_data_dir=str(tmp_path), inventory={"all": {"hosts": {"ctl": LOCAL}}},
                                quiet=True, suppress_env_files=True, **kwargs)
    assert runner.status == "successful"
    assert "cold path (configuration differs" in runner.stdout.read()
    ok = [e for e in runner.events if e["event"] == "runner_on_ok"]
    assert ok and ok[0]["event_data"]["res"]["stdout"].strip() == "42"


def test_the_bridge_falls_back_when_the_server_dies_and_restarts_it(warm: WarmAnsible,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pid = warm.server_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    monkeypatch.setattr(settings, "WARM_RESTART_PAUSE_S", 0)
    fallback = shell("echo still-works")
    assert fallback.hosts["ctl"].stdout == "still-works" and not went_warm(fallback)
    wait_ready(warm)
    assert warm.server_pid() not in (None, pid)
    assert went_warm(shell("echo warm-again"))


def test_closing_stops_the_server(tmp_path: Path) -> None:
    server = WarmAnsible(log_path=tmp_path / "warm.log")
    server.start(execution.ansible_envvars())
    wait_ready(server)
    pid = server.server_pid()
    socket_path = server.socket_path
    server.close()
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert socket_path is not None and not Path(socket_path).exists()


def test_the_server_goes_with_the_bridge_even_when_it_is_killed(tmp_path: Path) -> None:
    """No atexit runs on SIGKILL: the server notices the bridge's end on its stdin pipe."""
    import subprocess

    bridge = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from mcp_bridge import execution\n"
         "warm = execution.start_warm()\n"
         "while not warm.ready(): time.sleep(0.05)\n"
         "print(warm.server_pid(), flush=True)\n"
         "time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "JEXIDA_HOME": str(tmp_path)})
    try:
        server = int(bridge.stdout.readline())  # type: ignore[union-attr]
        assert Path(f"/proc/{server}").exists()
    finally:
        bridge.kill()
        bridge.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{server}").exists() and _cmdline(Path(f"/proc/{server}")):
        assert time.monotonic() < deadline, "the warm server outlived the bridge"
        time.sleep(0.1)
