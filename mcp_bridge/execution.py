"""Run Ansible on nodes through ansible-runner and turn its events into results.

Every command the suite runs goes through here: one ad-hoc Ansible run per call through
``ansible_runner.run`` with the suite's ansible.cfg, in a private data folder of its own so
concurrent calls never share runner files.

How a command travels (each step measured in bench/, see the README's performance section):

- The node-side script (execution_scripts.py) is a host variable of the per-call inventory,
  never part of a command line on the controller, so its size is not limited by ``exec``.
- ``ansible.builtin.raw`` runs it through ``/bin/sh``: no module, no Python on the node (the
  shell module's AnsiballZ costs ~0.2 s per node and call). raw runs without a tty
  (``ansible_ssh_use_tty: false``, a host var so it beats any other setting): with one, ssh
  merges stderr into stdout and adds "Shared connection ... closed". What ssh prints before the
  script starts is cut off at the script's begin marker.
- A script too big for one argument (~100 kB, Linux's limit is 128 KiB per argument, and raw
  passes it to ssh and the node's shell as one) goes through ``ansible.builtin.shell`` instead,
  on the module's stdin: it travels inside the pipelined module, where no such limit applies.
- Ansible itself is warm when the bridge started the warm server (mcp_bridge/warm/): the call
  is handed to a pre-imported Ansible instead of starting and importing a new one.
- Hosts whose node names an execution node run there instead (mcp_bridge/exec_node.py): the
  same inventory, module and events, streamed through ansible-runner transmit/worker/process.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import ansible_runner

from mcp_bridge import exec_node, runner_env, settings
from mcp_bridge.errors import JexidaError
from mcp_bridge.execution_scripts import (
    BEGIN_MARKER,
    MAX_EVENT_RES,
    META_MARKER,
    encoded_script,
    kill_script,
    new_run_id,
    script_inventory,
    wrap_command,
)
from mcp_bridge.runner_env import ansible_envvars, skip_idle_wait_after_exit, start_warm

__all__ = ["MAX_EVENT_RES", "META_MARKER", "HostResult", "RunOutcome", "ansible_envvars", "encoded_script",
           "kill_runs", "kill_script", "new_run_id", "run_module", "run_shell", "run_shell_batch",
           "run_snippet", "skip_idle_wait_after_exit", "start_warm", "wrap_command"]

HostStatus = Literal["succeeded", "failed", "timeout", "unreachable", "canceled"]

# Bytes of a node-side line that raw may carry: it becomes ONE argument of ssh and of the node's
# shell (Linux: 128 KiB per argument), and become wraps it once more. Above this, shell + stdin.
RAW_SCRIPT_LIMIT = 96 * 1024
RAW_ARGS = json.dumps({"_raw_params": "{{ jexida_script }}", "executable": "/bin/sh"})
STDIN_ARGS = json.dumps({"_raw_params": "/bin/sh", "stdin": "{{ jexida_script }}"})


@dataclass
class HostResult:
    host: str
    status: HostStatus
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    msg: str = ""
    truncated: bool = False
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    changed: bool = False
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


@dataclass
class RunOutcome:
    hosts: dict[str, HostResult]
    runner_status: str  # ansible-runner's: successful, failed, timeout, canceled (error: it could not start)
    runner_rc: int | None
    duration_ms: int
    artifact_dir: str
    error: str = ""  # why Ansible could not be started at all


# Left out of HostResult.result: the output (kept separately) and the wrapper script echoed back.
_BULKY_RESULT_KEYS = frozenset(
    {"stdout", "stderr", "stdout_lines", "stderr_lines", "cmd", "invocation", "exception"}
)


def _framed(stderr: str) -> tuple[str, dict[str, Any], list[str]]:
    """The script's own stderr, its META line, and what came around them (ssh's notes).

    Before the begin marker: what ssh printed before the script ran. After the META line:
    anything ssh printed when the session ended. Neither is the command's output."""
    notes: list[str] = []
    at = stderr.find(BEGIN_MARKER)
    if at >= 0:
        if stderr[:at].strip():
            notes.append(stderr[:at].strip())
        stderr = stderr[at + len(BEGIN_MARKER):]
        stderr = stderr[2:] if stderr.startswith("\r\n") else stderr[1:] if stderr.startswith("\n") else stderr
    meta: dict[str, Any] = {}
    marker_at = stderr.rfind(META_MARKER)
    if marker_at >= 0:
        line, _, after = stderr[marker_at + len(META_MARKER):].partition("\n")
        try:
            meta = json.loads(line.strip())
        except json.JSONDecodeError:
            meta = {}
        if after.strip():
            notes.append(after.strip())
        stderr = stderr[:marker_at]
    return stderr, meta, notes


def _host_result(event: str, host: str, res: Mapping[str, Any]) -> HostResult:
    # The shell module strips trailing newlines from both streams; raw does not: results are the same either way.
    stdout = str(res.get("stdout", "") or "").rstrip("\r\n")
    stderr, meta, notes = _framed(str(res.get("stderr", "") or ""))
    stderr = stderr.rstrip("\r\n")
    rc = meta.get("rc", res.get("rc"))  # META has the command's own code (the launcher turns 255 into 254)
    rc = int(rc) if isinstance(rc, int) else None
    if event == "runner_on_unreachable":
        status: HostStatus = "unreachable"
    elif meta.get("timed_out"):
        status = "timeout"
    elif meta.get("canceled"):
        status = "canceled"
    elif event == "runner_on_ok" and (rc in (None, 0)):
        status = "succeeded"
    else:
        status = "failed"
    omitted = "[... jexida: "
    result = {k: v for k, v in res.items() if k not in _BULKY_RESULT_KEYS}
    if notes:
        result["ssh_notes"] = "\n".join(notes)
    return HostResult(
        host=host,
        status=status,
        rc=rc,
        stdout=stdout,
        stderr=stderr,
        msg=str(res.get("msg", "") or ""),
        truncated=omitted in stdout or omitted in stderr,
        stdout_bytes=int(meta.get("stdout_bytes", len(stdout.encode()))),
        stderr_bytes=int(meta.get("stderr_bytes", len(stderr.encode()))),
        changed=bool(res.get("changed", False)),
        result=result,
    )


def _collector(results: dict[str, HostResult],
               on_host: Callable[[str, HostResult], None] | None) -> Callable[[dict[str, Any]], bool]:
    """ansible-runner's event handler: each host's result into ``results``, and ``on_host`` told."""
    def on_event(event: dict[str, Any]) -> bool:
        name = event.get("event", "")
        if name in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            data = event.get("event_data", {})
            host = str(data.get("host", ""))
            results[host] = _host_result(name, host, data.get("res", {}) or {})
            if on_host is not None:
                on_host(host, results[host])
        return True
    return on_event


def run_module(
    *,
    inventory: str | Mapping[str, Any],
    host_pattern: str,
    module: str,
    module_args: str = "",
    timeout_s: int | None = None,
    forks: int = 1,
    on_host: Callable[[str, HostResult], None] | None = None,
    give_up: Callable[[], bool] | None = None,
) -> RunOutcome:
    """Run one module ad-hoc on the hosts matching ``host_pattern`` and return per-host results.

    ``on_host`` hears of each host as it finishes (progress); ``give_up`` is polled and, once
    true, ends Ansible on the controller (a backstop: cancel stops the node side first).
    Call it from a worker thread, never from an event loop: it blocks until Ansible ends.
    """
    private_dir = runner_env.new_private_dir()
    results: dict[str, HostResult] = {}
    on_event = _collector(results, on_host)
    envvars = ansible_envvars()
    how: dict[str, Any] = {"module": module, "module_args": module_args, "host_pattern": host_pattern,
                           "envvars": envvars}
    server = runner_env.warm_server
    warm = server.runner_kwargs(envvars, module, module_args, host_pattern) if server is not None else None
    if warm is not None:
        how = warm  # ansible-runner starts the warm client instead of `ansible` (same command line)
    started = time.monotonic()
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private_dir),
            ident="run",
            inventory=dict(inventory) if isinstance(inventory, Mapping) else inventory,
            forks=forks,
            timeout=timeout_s,
            quiet=True,
            event_handler=on_event,
            cancel_callback=give_up,
            suppress_env_files=True,
            **how,
        )
    except OSError as exc:  # Ansible could not even be started: a result, not a crash of the call
        return RunOutcome(hosts=results, runner_status="error", runner_rc=None,
                          duration_ms=int((time.monotonic() - started) * 1000),
                          artifact_dir=str(private_dir / "artifacts" / "run"), error=f"cannot start Ansible: {exc}")
    duration_ms = int((time.monotonic() - started) * 1000)
    _mark_timeouts(str(runner.status), results)
    return RunOutcome(
        hosts=results,
        runner_status=str(runner.status),
        runner_rc=runner.rc,
        duration_ms=duration_ms,
        artifact_dir=str(private_dir / "artifacts" / "run"),
    )


def _mark_timeouts(status: str, results: dict[str, HostResult]) -> None:
    if status == "timeout":
        for result in results.values():
            if result.status == "failed":
                result.status = "timeout"


def _is_local(connection: Mapping[str, Any]) -> bool:
    return str(connection.get("ansible_connection", "")) in settings.LOCAL_CONNECTIONS


def run_scripts(
    hosts: Mapping[str, tuple[Mapping[str, Any], str]],
    *,
    timeout_s: int | None,
    on_host: Callable[[str, HostResult], None] | None = None,
    give_up: Callable[[], bool] | None = None,
) -> RunOutcome:
    """Run a node-side line on each host (name -> (connection vars, line)), all in ONE Ansible run.

    The line is the variable ``jexida_script`` of the per-call inventory; names that share a
    node are aliases of it and share its ControlPersist connection. Hosts behind an execution
    node run there instead, one streamed run per execution node, beside the direct run."""
    groups = exec_node.split_hosts(hosts)
    if set(groups) != {("", "")}:
        return _run_groups(groups, timeout_s=timeout_s, on_host=on_host, give_up=give_up)
    name, args = _module_for(hosts)
    return run_module(inventory=script_inventory(hosts), host_pattern="all", module=name, module_args=args,
                      timeout_s=timeout_s, forks=settings.forks_for(len(hosts)), on_host=on_host, give_up=give_up)


def _module_for(hosts: Mapping[str, tuple[Mapping[str, Any], str]]) -> tuple[str, str]:
    module = os.environ.get(settings.NODE_MODULE_ENV, "raw").strip().lower()
    if module not in ("raw", "shell"):
        raise JexidaError(f"{settings.NODE_MODULE_ENV}={module!r}: it takes raw (the default) or shell")
    fits = max((len(line.encode()) for _, line in hosts.values()), default=0) <= RAW_SCRIPT_LIMIT
    return ("ansible.builtin.raw", RAW_ARGS) if module == "raw" and fits else ("ansible.builtin.shell", STDIN_ARGS)


def _run_groups(groups: Mapping[tuple[str, str], Mapping[str, tuple[Mapping[str, Any], str]]], *,
                timeout_s: int | None, on_host: Callable[[str, HostResult], None] | None,
                give_up: Callable[[], bool] | None) -> RunOutcome:
    """The direct hosts and each execution node's hosts at the same time; one outcome for the call."""
    lock = threading.Lock()

    def told(host: str, result: HostResult) -> None:
        if on_host is not None:
            with lock:  # streamed runs report from their own threads
                on_host(host, result)

    def one(key: tuple[str, str]) -> RunOutcome:
        hosts = groups[key]
        if key == ("", ""):
            return run_scripts(hosts, timeout_s=timeout_s, on_host=told, give_up=give_up)
        results: dict[str, HostResult] = {}
        runner = next(iter(hosts.values()))[0][exec_node.EXECUTION_NODE_VAR]
        module, args = _module_for(hosts)
        run = exec_node.run_streamed(runner, hosts, module=module, module_args=args, timeout_s=timeout_s,
                                     on_event=_collector(results, told), give_up=give_up)
        _mark_timeouts(run.status, results)
        for host in hosts:
            if host not in results and run.error:  # the execution node itself failed: say so per host
                results[host] = HostResult(host=host, status="unreachable", msg=run.error)
        return RunOutcome(hosts=results, runner_status=run.status, runner_rc=run.rc, duration_ms=run.duration_ms,
                          artifact_dir=run.artifact_dir, error=run.error)

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        outcomes = list(pool.map(one, list(groups)))
    worst = next((o for o in outcomes if o.runner_status not in ("successful",)), outcomes[0])
    return RunOutcome(hosts={h: r for o in outcomes for h, r in o.hosts.items()}, runner_status=worst.runner_status,
                      runner_rc=worst.runner_rc, duration_ms=max(o.duration_ms for o in outcomes),
                      artifact_dir=outcomes[0].artifact_dir, error="; ".join(o.error for o in outcomes if o.error))


def _controller_timeout(timeout_s: int) -> int | None:
    return timeout_s + settings.CONTROLLER_GRACE_S if timeout_s > 0 else None


def run_shell(
    *,
    nodes: Mapping[str, Mapping[str, Any]],
    command: str,
    timeout_s: int,
    output_cap: int,
    run_id: str | None = None,
    on_host: Callable[[str, HostResult], None] | None = None,
    give_up: Callable[[], bool] | None = None,
) -> RunOutcome:
    """Run a shell command on each node (name -> connection vars), stopped on the node at ``timeout_s``.

    ``run_id`` names the run's private folder on each node: kill_script() stops it by that name.
    """
    script = wrap_command(command, timeout_s, output_cap)
    run_id = run_id or new_run_id()
    hosts = {name: (connection, encoded_script(script, run_id, local=_is_local(connection)))
             for name, connection in nodes.items()}
    return run_scripts(hosts, timeout_s=_controller_timeout(timeout_s), on_host=on_host, give_up=give_up)


def run_shell_batch(
    targets: Sequence[tuple[str, Mapping[str, Any], str, str]],
    *,
    timeout_s: int,
    output_cap: int,
    on_host: Callable[[str, HostResult], None] | None = None,
    give_up: Callable[[], bool] | None = None,
) -> RunOutcome:
    """Run a different command on each target in ONE Ansible run; results keyed by target name.

    Each target is (name, connection vars, command, run id). Targets on the same node become
    host aliases sharing its ControlPersist connection, so one Ansible start serves the batch.
    """
    hosts = {name: (connection, encoded_script(wrap_command(command, timeout_s, output_cap), run_id,
                                               local=_is_local(connection)))
             for name, connection, command, run_id in targets}
    return run_scripts(hosts, timeout_s=_controller_timeout(timeout_s), on_host=on_host, give_up=give_up)


def run_snippet(name: str, connection: Mapping[str, Any], script: str) -> RunOutcome:
    """Run a short node-side sh script (the jobs' start/poll/read/cancel) on one node."""
    line = encoded_script(script, local=_is_local(connection))
    return run_scripts({name: (connection, line)}, timeout_s=settings.NODE_SNIPPET_TIMEOUT_S)


def kill_runs(targets: Mapping[str, tuple[Mapping[str, Any], Sequence[str]]]) -> RunOutcome:
    """Stop runs on nodes, all nodes in one Ansible run: {node: (connection vars, run ids)}."""
    hosts = {name: (connection, kill_script(run_ids)) for name, (connection, run_ids) in targets.items()}
    return run_scripts(hosts, timeout_s=settings.NODE_SNIPPET_TIMEOUT_S)
