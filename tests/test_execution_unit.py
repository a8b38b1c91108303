"""The execution layer on the controller itself (a local connection, harmless commands only): script
sizes, ssh-noise framing, host key checking, ansible-runner's poll interval, raw and its fallback."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mcp_bridge import execution, execution_scripts, runner_env, settings

LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


@pytest.fixture(autouse=True)
def cold(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the cold path (the warm one has tests/test_warm.py)."""
    monkeypatch.setattr(runner_env, "warm_server", None)


def run(command: str, timeout_s: int = 30, **kwargs: object) -> execution.HostResult:
    outcome = execution.run_shell(nodes={"ctl": LOCAL}, command=command, timeout_s=timeout_s,
                                  output_cap=1 << 20, **kwargs)  # type: ignore[arg-type]
    assert "ctl" in outcome.hosts, (outcome.runner_status, outcome.error)
    return outcome.hosts["ctl"]


def test_a_script_is_less_than_twice_its_command() -> None:
    command = "echo " + "x" * 100_000
    line = execution_scripts.encoded_script(execution_scripts.wrap_command(command, 300, 1 << 20))
    assert len(line) < 1.9 * len(command), len(line) / len(command)  # it was 7.3 times


def test_ssh_noise_before_the_script_and_after_its_meta_is_not_output() -> None:
    stderr = (f"Warning: Permanently added '10.0.0.3' (ED25519) to the list of known hosts.\r\n"
              f"{execution_scripts.BEGIN_MARKER}\nreal error\n\n"
              f'{execution_scripts.META_MARKER} {{"rc": 255, "stdout_bytes": 3, "stderr_bytes": 11, '
              f'"timed_out": 0, "canceled": 0}}\nConnection to 10.0.0.3 closed.\r\n')
    result = execution._host_result("runner_on_failed", "n", {"rc": 254, "stdout": "hi\n", "stderr": stderr})
    assert (result.stdout, result.stderr, result.rc, result.status) == ("hi", "real error", 255, "failed")
    assert "Permanently added" in result.result["ssh_notes"] and "closed" in result.result["ssh_notes"]


def test_host_key_checking_follows_the_config_not_ansible_runner(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANSIBLE_HOST_KEY_CHECKING", raising=False)
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\nforks = 5\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(config))
    assert execution.ansible_envvars()["ANSIBLE_HOST_KEY_CHECKING"] == "True"  # Ansible's default
    config.write_text("[defaults]\nhost_key_checking = false\n")
    os.utime(config, (time.time() + 5, time.time() + 5))
    assert execution.ansible_envvars()["ANSIBLE_HOST_KEY_CHECKING"] == "false"
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "yes")
    assert execution.ansible_envvars()["ANSIBLE_HOST_KEY_CHECKING"] == "yes"
    monkeypatch.delenv("ANSIBLE_HOST_KEY_CHECKING")
    monkeypatch.delenv("ANSIBLE_CONFIG")
    assert execution.ansible_envvars()["ANSIBLE_HOST_KEY_CHECKING"] == "true"  # the suite's ansible.cfg


def test_output_rc_and_stderr_through_raw() -> None:
    result = run("pwd; printf 'out\\n\\n'; echo err >&2; exit 3")
    assert result.status == "failed" and result.rc == 3
    assert result.stdout == f"{Path.home()}\nout"  # at home, not in ansible-runner's folder
    assert result.stderr == "err" and "ssh_notes" not in result.result
    assert result.result.get("msg") == "non-zero return code"


def test_exit_255_is_the_commands_code_not_an_unreachable_node() -> None:
    result = run("exit 255")
    assert (result.status, result.rc) == ("failed", 255)


def test_templates_and_quotes_reach_the_node_as_written() -> None:
    assert run("""echo '{{ 1+1 }}' "{% raw %}" $'a\\tb' \\\\""").stdout == "{{ 1+1 }} {% raw %} a\tb \\"


def test_a_200_kb_command_runs_whole() -> None:
    text = "".join(f"{i:05x}" for i in range(40_000))  # 200 kB, no repeats
    result = run(f"echo {text} | tee /dev/null")
    assert result.status == "succeeded", result.msg
    assert result.stdout == text and result.stdout_bytes == len(text) + 1


def test_the_shell_module_path_gives_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = run("echo a; echo b >&2; exit 4")
    monkeypatch.setenv(settings.NODE_MODULE_ENV, "shell")
    shell = run("echo a; echo b >&2; exit 4")
    assert (raw.status, raw.rc, raw.stdout, raw.stderr) == (shell.status, shell.rc, shell.stdout, shell.stderr)


def test_runner_settings_make_a_give_up_act_within_a_second() -> None:
    started = time.monotonic()
    # (the node side's own timeout ends the sleep 2 s later: stopping it is the killer's job, not tested here)
    outcome = execution.run_shell(nodes={"ctl": LOCAL}, command="sleep 41.5", timeout_s=3, output_cap=1024,
                                  give_up=lambda: time.monotonic() - started > 1)
    elapsed = time.monotonic() - started
    settings_file = Path(outcome.artifact_dir).parents[1] / "env" / "settings"
    assert json.loads(settings_file.read_text()) == {"pexpect_timeout": settings.RUNNER_POLL_S}
    assert outcome.runner_status == "canceled"
    assert elapsed < 2.5, f"ansible-runner noticed the give-up after {elapsed:.1f}s"


def test_ansible_that_cannot_start_is_a_result(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(**_: object) -> None:
        raise OSError(7, "Argument list too long")

    monkeypatch.setattr(execution.ansible_runner, "run", fail)
    outcome = execution.run_shell(nodes={"ctl": LOCAL}, command="true", timeout_s=5, output_cap=1024)
    assert outcome.runner_status == "error" and "Argument list too long" in outcome.error


def test_a_call_forks_once_per_host_up_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_run(**kwargs: object) -> object:
        seen.update(kwargs)
        raise OSError("not started")  # enough: the call reports it as a result

    monkeypatch.setattr(execution.ansible_runner, "run", fake_run)
    hosts = {f"n{i}": ({"ansible_host": f"127.0.0.{i % 250 + 1}"}, "true") for i in range(settings.MAX_FORKS + 50)}
    outcome = execution.run_scripts(hosts, timeout_s=5)
    assert outcome.runner_status == "error" and seen["forks"] == settings.MAX_FORKS
    execution.run_scripts(dict(list(hosts.items())[:3]), timeout_s=5)
    assert seen["forks"] == 3


def test_a_misspelt_node_module_setting_is_an_error_not_the_other_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.NODE_MODULE_ENV, "rwa")
    with pytest.raises(execution.JexidaError, match=r"takes raw .* or shell"):
        run("echo hi")


def test_a_node_on_the_local_connections_fqcn_runs_from_home() -> None:
    result = run_on({**LOCAL, "ansible_connection": "ansible.builtin.local"}, "pwd")
    assert result.ok and result.stdout.strip() == str(Path.home()), result


def run_on(connection: dict[str, object], command: str) -> execution.HostResult:
    outcome = execution.run_shell(nodes={"ctl": connection}, command=command, timeout_s=30, output_cap=1 << 20)
    return outcome.hosts["ctl"]


def _line_of(inventory: dict[str, Any], host: str) -> str:
    return inventory["all"]["hosts"][host].get("jexida_script", inventory["all"].get("vars", {}).get("jexida_script"))


def test_a_line_many_hosts_share_is_written_once() -> None:
    big = "echo " + "x" * 200_000
    hosts: dict[str, tuple[dict[str, Any], str]] = {
        f"n{i}": ({"ansible_host": f"127.0.0.{i}"}, big) for i in range(100)}
    hosts["odd"] = ({"ansible_host": "127.0.0.200"}, "echo odd")
    inventory = execution_scripts.script_inventory(hosts)
    assert len(json.dumps(inventory)) < 1.1 * len(big)  # once, not 100 times (20 MB)
    assert {host: _line_of(inventory, host) for host in hosts} == {host: line for host, (_, line) in hosts.items()}
    assert inventory["all"]["hosts"]["n7"] == {"ansible_host": "127.0.0.7", "ansible_ssh_use_tty": False}


def test_lines_no_two_hosts_share_stay_host_vars() -> None:
    inventory = execution_scripts.script_inventory({"a": ({}, "echo a"), "b": ({}, "echo b")},
                                                   host_vars=lambda c: {"given": True})
    assert "vars" not in inventory["all"]
    assert inventory["all"]["hosts"] == {"a": {"given": True, "ansible_ssh_use_tty": False, "jexida_script": "echo a"},
                                         "b": {"given": True, "ansible_ssh_use_tty": False, "jexida_script": "echo b"}}


def test_hosts_sharing_a_line_and_a_host_with_its_own_each_run_theirs() -> None:
    outcome = execution.run_scripts({"a": (LOCAL, "echo shared"), "b": (LOCAL, "echo shared"),
                                     "c": (LOCAL, "echo own")}, timeout_s=60)
    assert {host: result.stdout.strip() for host, result in outcome.hosts.items()} == {
        "a": "shared", "b": "shared", "c": "own"}, outcome

