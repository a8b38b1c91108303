"""Run Ansible modules on nodes through ansible-runner and turn its events into results.

Every command the suite runs goes through here: ad-hoc ``ansible.builtin.shell`` (or
another module) via ``ansible_runner.run`` with the suite's ansible.cfg, in a private
data folder of its own so concurrent calls never share runner files.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ansible_runner

from mcp_bridge import settings
from mcp_bridge.paths import ANSIBLE_CFG, state_dir

HostStatus = Literal["succeeded", "failed", "timeout", "unreachable", "canceled"]

MAX_EVENT_RES = 16 * 1024 * 1024
META_MARKER = "__JEXIDA_META__"

# Runs the user's command on the node. The command arrives base64-encoded (data, never
# parsed by a shell on either side until the node's bash reads it from a file); its output
# is spooled to files on the node and only head + tail come back, so neither the network
# nor the bridge ever holds more than the cap. `timeout` kills the command's whole process
# group on the node when the time is up.
# The comments stay in the file; the node gets only the code.
_WRAPPER = "\n".join(
    line for line in (Path(__file__).parent / "run_wrapper.sh").read_text().splitlines() if not line.startswith("#")
)


def wrap_command(command: str, timeout_s: int, output_cap: int) -> str:
    """The node-side script that runs ``command`` with a timeout and capped output."""
    encoded = base64.b64encode(command.encode()).decode()
    # Both streams twice (stdout and stdout_lines) must stay under what ansible-runner passes on.
    cap = min(max(int(output_cap), 64), MAX_EVENT_RES // 6)
    return (
        _WRAPPER.replace("@B64@", encoded)
        .replace("@T@", str(max(int(timeout_s), 0)))
        .replace("@C@", str(cap))
        .replace("@H@", str(cap // 2))
        .replace("@M@", META_MARKER)
    )


# Every node-side script runs in a private folder of its run, named by the bridge, so that a
# cancel can find the run's process (its pid file) and signal it the way a timeout does.
_RUN_BASE = "${TMPDIR:-/tmp}/jexida-$(id -u)"
_LAUNCHER = " ".join((
    f"umask 077; b={_RUN_BASE};",
    'mkdir -p "$b" && [ -O "$b" ] && [ ! -L "$b" ] || { echo "jexida: $b is not a private folder of this user" >&2;',
    'exit 97; }; d="$b/@RID@";',
    'if ! mkdir "$d" 2>/dev/null; then if [ -f "$d/canceled" ]; then rm -rf "$d";',
    """printf '\\n@M@ {"rc": 143, "stdout_bytes": 0, "stderr_bytes": 0, "timed_out": 0, "canceled": 1}\\n' >&2;""",
    'exit 143; fi; echo "jexida: run folder $d exists" >&2; exit 97; fi;',
    '{ printf %s @B64@ | base64 -d 2>/dev/null || printf %s @B64@ | base64 -D; } > "$d/run.sh";',
    'sh "$d/run.sh"; rc=$?; rm -rf "$d"; exit $rc',
))

# Stops runs by id: TERM to the pid the wrapper recorded (`timeout`, which passes it to the whole
# process group, then KILL after 5 s). A run that has not started yet is marked so it never does;
# such marks older than 10 minutes (runs that ended meanwhile) are cleared.
_KILLER = " ".join((
    f'b={_RUN_BASE}; [ -O "$b" ] && [ ! -L "$b" ] || exit 0;',
    'find "$b" -mindepth 2 -maxdepth 2 -name canceled -mmin +10 2>/dev/null',
    '| while read -r f; do rm -rf "${f%/*}"; done;',
    'for r in @RIDS@; do d="$b/$r";',
    'if mkdir "$d" 2>/dev/null; then : > "$d/canceled"; echo "prevented $r"; continue; fi;',
    ': > "$d/canceled" 2>/dev/null; i=0;',
    'while [ ! -s "$d/pid" ] && [ -d "$d" ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done;',
    'if [ -s "$d/pid" ] && kill -TERM "$(cat "$d/pid")" 2>/dev/null; then echo "stopped $r"; else echo "gone $r"; fi;',
    "done",
))
_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def encoded_script(script: str, run_id: str | None = None) -> str:
    """A shell line that runs ``script`` with sh on the node, in the private folder of run ``run_id``.

    Ansible splits and templates ad-hoc module args; base64 leaves nothing for it to parse,
    so quotes, braces and backslashes in the script reach the node exactly as written.
    """
    run_id = run_id or new_run_id()
    if not _RUN_ID.match(run_id):
        raise ValueError(f"bad run id {run_id!r}")
    encoded = base64.b64encode(script.encode()).decode()
    return _LAUNCHER.replace("@RID@", run_id).replace("@B64@", encoded).replace("@M@", META_MARKER)


def kill_script(run_ids: Sequence[str]) -> str:
    """A shell line that stops these runs on a node (see _KILLER); prints stopped/prevented/gone per run."""
    bad = [r for r in run_ids if not _RUN_ID.match(r)]
    if bad:
        raise ValueError(f"bad run ids {bad!r}")
    return _KILLER.replace("@RIDS@", " ".join(run_ids))


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
    runner_status: str  # ansible-runner's: successful, failed, timeout, canceled
    runner_rc: int | None
    duration_ms: int
    artifact_dir: str


_pty_close_patched = False


def skip_idle_wait_after_exit() -> None:
    """Stop pexpect from sleeping 0.1 s when closing the pty of an Ansible that already exited.

    ansible-runner closes the child's pty after Ansible ends; ptyprocess then always sleeps
    `delayafterclose` (0.1 s) "to give the kernel time", even when the child was already
    reaped. Measured with cProfile, that sleep is about 12% of a one-command run. A child that
    is still alive keeps the original behaviour (wait, then terminate).
    """
    global _pty_close_patched
    if _pty_close_patched:
        return
    from ptyprocess import PtyProcess

    original_close = PtyProcess.close

    def close(self: PtyProcess, force: bool = True) -> None:
        if not self.closed and not self.isalive():
            self.delayafterclose = 0
        original_close(self, force)

    PtyProcess.close = close  # type: ignore[method-assign]
    _pty_close_patched = True


def _ensure_ansible_on_path() -> None:
    """ansible-runner looks up `ansible` on PATH: make it the one beside this interpreter."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if venv_bin not in path.split(os.pathsep):
        os.environ["PATH"] = venv_bin + os.pathsep + path


def runner_root() -> Path:
    root = state_dir() / "runner"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _new_private_dir() -> Path:
    """A private data folder of its own for one ansible-runner call (calls never share runner files)."""
    _ensure_ansible_on_path()
    private_dir = runner_root() / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    private_dir.mkdir(mode=0o700)
    return private_dir


def ansible_envvars() -> dict[str, str]:
    """The environment every run gets: the suite's ansible.cfg (or the person's ANSIBLE_CONFIG).

    Collections (jexida.cluster included) come from the Python path of the venv's `ansible`.
    """
    env = {
        "ANSIBLE_CONFIG": os.environ.get("ANSIBLE_CONFIG") or str(ANSIBLE_CFG),
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
        "ANSIBLE_NOCOLOR": "1",
        # ansible-runner drops a result larger than this from its events (default 700 kB): a
        # capped command result (head + tail of both streams, and stdout_lines again) must fit.
        "MAX_EVENT_RES": str(MAX_EVENT_RES),
    }
    return env


_rotate_lock = threading.Lock()
_runs_since_rotation = 0


def _rotate_runner_dirs(root: Path, keep: int = settings.RUNNER_DIRS_KEPT) -> None:
    """Keep the newest ``keep`` per-call folders; checked every few runs (listing costs a few ms)."""
    global _runs_since_rotation
    with _rotate_lock:
        _runs_since_rotation += 1
        if _runs_since_rotation < settings.RUNNER_ROTATE_EVERY:
            return
        _runs_since_rotation = 0
        dirs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in dirs[:-keep] if len(dirs) > keep else []:
            shutil.rmtree(old, ignore_errors=True)


# Left out of HostResult.result: the output (kept separately) and the wrapper script echoed back.
_BULKY_RESULT_KEYS = frozenset(
    {"stdout", "stderr", "stdout_lines", "stderr_lines", "cmd", "invocation", "exception"}
)


def _host_result(event: str, host: str, res: Mapping[str, Any]) -> HostResult:
    stdout = str(res.get("stdout", "") or "")
    stderr = str(res.get("stderr", "") or "")
    meta: dict[str, Any] = {}
    marker_at = stderr.rfind(META_MARKER)
    if marker_at >= 0:
        try:
            meta = json.loads(stderr[marker_at + len(META_MARKER):].strip())
        except json.JSONDecodeError:
            meta = {}
        stderr = stderr[:marker_at].rstrip("\n")
    rc = res.get("rc")
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
        result={k: v for k, v in res.items() if k not in _BULKY_RESULT_KEYS},
    )


def run_module(
    *,
    inventory: str | Mapping[str, Any],
    host_pattern: str,
    module: str,
    module_args: str = "",
    timeout_s: int | None = None,
    forks: int = 50,
    on_host: Callable[[str, HostResult], None] | None = None,
    give_up: Callable[[], bool] | None = None,
) -> RunOutcome:
    """Run one module ad-hoc on the hosts matching ``host_pattern`` and return per-host results.

    ``on_host`` hears of each host as it finishes (progress); ``give_up`` is polled and, once
    true, ends Ansible on the controller (a backstop: cancel stops the node side first).
    Call it from a worker thread, never from an event loop: it blocks until Ansible ends.
    """
    private_dir = _new_private_dir()
    results: dict[str, HostResult] = {}

    def on_event(event: dict[str, Any]) -> bool:
        name = event.get("event", "")
        if name in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            data = event.get("event_data", {})
            host = str(data.get("host", ""))
            results[host] = _host_result(name, host, data.get("res", {}) or {})
            if on_host is not None:
                on_host(host, results[host])
        return True

    started = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(private_dir),
        ident="run",
        inventory=dict(inventory) if isinstance(inventory, Mapping) else inventory,
        host_pattern=host_pattern,
        module=module,
        module_args=module_args,
        forks=forks,
        envvars=ansible_envvars(),
        timeout=timeout_s,
        quiet=True,
        event_handler=on_event,
        cancel_callback=give_up,
        suppress_env_files=True,
    )
    duration_ms = int((time.monotonic() - started) * 1000)
    if runner.status == "timeout":
        for host, result in results.items():
            if result.status == "failed":
                results[host].status = "timeout"
    _rotate_runner_dirs(private_dir.parent)
    return RunOutcome(
        hosts=results,
        runner_status=str(runner.status),
        runner_rc=runner.rc,
        duration_ms=duration_ms,
        artifact_dir=str(private_dir / "artifacts" / "run"),
    )


def run_shell(
    *,
    inventory: str | Mapping[str, Any],
    host_pattern: str,
    command: str,
    timeout_s: int,
    output_cap: int,
    run_id: str | None = None,
    on_host: Callable[[str, HostResult], None] | None = None,
    give_up: Callable[[], bool] | None = None,
) -> RunOutcome:
    """Run a shell command on every host matching the pattern, stopped on the node at ``timeout_s``.

    ``run_id`` names the run's private folder on each node: kill_script() stops it by that name.
    """
    script = wrap_command(command, timeout_s, output_cap)
    return run_module(
        inventory=inventory,
        host_pattern=host_pattern,
        module="ansible.builtin.shell",
        module_args=encoded_script(script, run_id),
        timeout_s=timeout_s + settings.CONTROLLER_GRACE_S if timeout_s > 0 else None,
        on_host=on_host,
        give_up=give_up,
    )


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
    host aliases sharing its ControlPersist connection; the per-host script is a host variable
    the module args template picks up, so one Ansible start serves the whole batch.
    """
    hosts = {
        name: {**dict(connection), "jexida_script": encoded_script(wrap_command(command, timeout_s, output_cap),
                                                                  run_id)}
        for name, connection, command, run_id in targets
    }
    return run_module(
        inventory={"all": {"hosts": hosts}},
        host_pattern="all",
        module="ansible.builtin.shell",
        # JSON args: a bare "{{ ... }}" would itself be taken for JSON by the ad-hoc CLI.
        module_args=json.dumps({"cmd": "{{ jexida_script }}"}),
        timeout_s=timeout_s + settings.CONTROLLER_GRACE_S if timeout_s > 0 else None,
        forks=max(1, len(hosts)),
        on_host=on_host,
        give_up=give_up,
    )


def kill_runs(targets: Mapping[str, tuple[Mapping[str, Any], Sequence[str]]]) -> RunOutcome:
    """Stop runs on nodes, all nodes in one Ansible run: {node: (connection vars, run ids)}."""
    hosts = {name: {**dict(connection), "jexida_script": kill_script(run_ids)}
             for name, (connection, run_ids) in targets.items()}
    return run_module(inventory={"all": {"hosts": hosts}}, host_pattern="all", module="ansible.builtin.shell",
                      module_args=json.dumps({"cmd": "{{ jexida_script }}"}), forks=max(1, len(hosts)),
                      timeout_s=settings.NODE_SNIPPET_TIMEOUT_S)


@dataclass
class TaskEvent:
    host: str
    task: str
    status: Literal["ok", "changed", "failed", "skipped", "unreachable"]
    message: str = ""


@dataclass
class PlaybookOutcome:
    tasks: list[TaskEvent]
    recap: dict[str, dict[str, int]]
    runner_status: str
    runner_rc: int | None
    duration_ms: int


def run_playbook(
    *,
    playbook: str,
    inventory: str | Mapping[str, Any],
    limit: str | None = None,
    extravars: Mapping[str, Any] | None = None,
    check: bool = False,
    timeout_s: int | None = 1800,
) -> PlaybookOutcome:
    """Run a playbook through ansible-runner and summarise it task by task."""
    private_dir = _new_private_dir()
    tasks: list[TaskEvent] = []
    recap: dict[str, dict[str, int]] = {}
    statuses = {"runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped",
                "runner_on_unreachable": "unreachable", "runner_item_on_failed": "failed"}

    def on_event(event: dict[str, Any]) -> bool:
        name = event.get("event", "")
        data = event.get("event_data", {}) or {}
        if name in statuses:
            res = data.get("res", {}) or {}
            status = statuses[name]
            if status == "ok" and res.get("changed"):
                status = "changed"
            message = res.get("msg", "")
            if isinstance(message, list):
                message = "; ".join(str(m) for m in message)
            if name == "runner_on_ok" and "results" in res:  # a loop: gather the items' messages
                message = "; ".join(str(r.get("msg", "")) for r in res["results"] if r.get("msg"))
            if data.get("ignore_errors") and status == "failed":
                status = "ok"
            tasks.append(TaskEvent(host=str(data.get("host", "")), task=str(data.get("task", "")),
                                   status=status, message=str(message or "")))  # type: ignore[arg-type]
        elif name == "playbook_on_stats":
            for key in ("ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored"):
                for host, count in (data.get(key) or {}).items():
                    recap.setdefault(host, {})[key] = int(count)
        return True

    started = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(private_dir),
        ident="run",
        playbook=playbook,
        inventory=dict(inventory) if isinstance(inventory, Mapping) else inventory,
        limit=limit,
        extravars=dict(extravars or {}),
        cmdline="--check" if check else None,
        envvars=ansible_envvars(),
        timeout=timeout_s,
        quiet=True,
        event_handler=on_event,
        suppress_env_files=True,
    )
    _rotate_runner_dirs(private_dir.parent)
    return PlaybookOutcome(tasks=tasks, recap=recap, runner_status=str(runner.status), runner_rc=runner.rc,
                           duration_ms=int((time.monotonic() - started) * 1000))
