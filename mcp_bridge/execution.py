"""Run Ansible modules on nodes through ansible-runner and turn its events into results.

Every command the suite runs goes through here: ad-hoc ``ansible.builtin.shell`` (or
another module) via ``ansible_runner.run`` with the suite's ansible.cfg, in a private
data folder of its own so concurrent calls never share runner files.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ansible_runner

from mcp_bridge import settings
from mcp_bridge.paths import ANSIBLE_CFG, state_dir

HostStatus = Literal["succeeded", "failed", "timeout", "unreachable"]

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


def encoded_script(script: str) -> str:
    """Module args for ansible.builtin.shell that run ``script`` with sh on the node.

    Ansible splits and templates ad-hoc module args; base64 leaves nothing for it to parse,
    so quotes, braces and backslashes in the script reach the node exactly as written.
    """
    encoded = base64.b64encode(script.encode()).decode()
    return (f"f=$(mktemp) || exit 97; {{ printf %s {encoded} | base64 -d 2>/dev/null || "
            f"printf %s {encoded} | base64 -D; }} > \"$f\"; sh \"$f\"; rc=$?; rm -f \"$f\"; exit $rc")


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
) -> RunOutcome:
    """Run one module ad-hoc on the hosts matching ``host_pattern`` and return per-host results.

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
) -> RunOutcome:
    """Run a shell command on every host matching the pattern, stopped on the node at ``timeout_s``."""
    script = wrap_command(command, timeout_s, output_cap)
    return run_module(
        inventory=inventory,
        host_pattern=host_pattern,
        module="ansible.builtin.shell",
        module_args=encoded_script(script),
        timeout_s=timeout_s + settings.CONTROLLER_GRACE_S if timeout_s > 0 else None,
    )


def run_shell_batch(
    targets: Sequence[tuple[str, Mapping[str, Any], str]],
    *,
    timeout_s: int,
    output_cap: int,
) -> RunOutcome:
    """Run a different command on each target in ONE Ansible run; results keyed by target name.

    Each target is (name, connection vars, command). Targets on the same node become host
    aliases sharing its ControlPersist connection; the per-host script is a host variable the
    module args template picks up, so one Ansible start serves the whole batch.
    """
    hosts = {
        name: {**dict(connection), "jexida_script": encoded_script(wrap_command(command, timeout_s, output_cap))}
        for name, connection, command in targets
    }
    return run_module(
        inventory={"all": {"hosts": hosts}},
        host_pattern="all",
        module="ansible.builtin.shell",
        # JSON args: a bare "{{ ... }}" would itself be taken for JSON by the ad-hoc CLI.
        module_args=json.dumps({"cmd": "{{ jexida_script }}"}),
        timeout_s=timeout_s + settings.CONTROLLER_GRACE_S if timeout_s > 0 else None,
        forks=max(1, len(hosts)),
    )


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
