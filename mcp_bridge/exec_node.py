"""Running a call's hosts on an execution node, with ansible-runner's streaming interface.

A node whose registry entry names an ``execution_node`` is not reached from the controller: its
share of a call is one streamed ansible-runner job, the interface AWX's execution nodes speak
over Receptor, carried here by ssh:

- ``transmit`` (in this process) packs the job: the per-call inventory (the node-side script is
  a host var, as for direct calls), the module and its args, the timeout, the suite's
  ansible.cfg, Ansible's environment, the known_hosts files the hosts' ssh args name (their paths
  rewritten to the worker folder) and the controller's private key (``ssh_key``: ansible-runner
  hands it to an ssh-agent there through a fifo, never a file);
- ``ssh <execution node> jexida-worker-guard ...`` runs ``ansible-runner worker`` there under a
  guard that kills the worker and everything it started as soon as our end of the channel
  closes (a cancel or a timeout here, or this process dying): ansible-runner's own cancel does
  not cross the stream;
- ``process`` (in this process) reads the worker's events as they come, so the event ->
  HostResult code, progress and output caps are those of a direct call.

The node-side command is stopped the way a direct one is: its own timeout on the node, or the
kill-by-run-id script, which reaches the node through the execution node as a second streamed call.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner
from ansible_collections.jexida.cluster.plugins.plugin_utils import probe as node_probe

from mcp_bridge import runner_env, settings
from mcp_bridge.execution_scripts import script_inventory
from mcp_bridge.nodes import EXECUTION_NODE_VAR  # the connection var holding the execution node's entry
from mcp_bridge.paths import ANSIBLE_CFG

_KEY_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")
# Ansible's ssh settings (ansible.cfg, environment): fixed for the process once Ansible is imported.
_ssh_defaults = functools.cache(node_probe.ansible_ssh_defaults)
_KNOWN_HOSTS = re.compile(r"""(UserKnownHostsFile[= ])("?)([^"\s]+)\2""", re.IGNORECASE)


@dataclass
class StreamedRun:
    status: str  # ansible-runner's, as `process` saw it; "canceled" when we gave up
    rc: int | None
    duration_ms: int
    artifact_dir: str
    error: str = ""


def split_hosts(hosts: Mapping[str, tuple[Mapping[str, Any], str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Hosts grouped by (execution node, private key): one streamed job each; ("", "") runs directly.

    One job carries one ``ssh_key``, so hosts that log in with different keys need jobs of their own."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for name, (connection, line) in hosts.items():
        runner = connection.get(EXECUTION_NODE_VAR)
        key = ("", "") if not runner else (str(runner["name"]), private_key(connection) or "")
        groups.setdefault(key, {})[name] = (connection, line)
    return groups


def private_key(connection: Mapping[str, Any]) -> str | None:
    """The key Ansible logs in with: the host's vars, else ansible.cfg / ANSIBLE_PRIVATE_KEY_FILE."""
    given = next((connection[var] for var in _KEY_VARS if connection.get(var)), None)
    return str(given or _ssh_defaults().get("private_key_file") or "") or None


def worker_side(connection: Mapping[str, Any], work_dir: str, files: dict[str, str],
                shipped: dict[str, str] | None = None) -> dict[str, Any]:
    """A host's connection vars as the worker needs them: no controller paths.

    The private key travels as the job's ``ssh_key``; each known_hosts file named in the ssh args
    travels in ``files`` (name -> content, shipped in the job folder) and the args point at the copy.
    ``shipped`` (path -> name) lets the hosts of one job share a file: it is read and sent once."""
    out = {k: v for k, v in connection.items() if k != EXECUTION_NODE_VAR and k not in _KEY_VARS}
    shipped = {} if shipped is None else shipped

    def ship(match: re.Match[str]) -> str:
        path = os.path.expanduser(match.group(3))
        if path not in shipped:
            shipped[path] = name = f"known_hosts_{len(files)}"
            try:
                files[name] = Path(path).read_text(errors="replace")
            except OSError:
                files[name] = ""  # an empty file: strict checking then refuses, as it would here
        return f"{match.group(1)}{work_dir}/{shipped[path]}"

    for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        if isinstance(out.get(var), str):
            out[var] = _KNOWN_HOSTS.sub(ship, out[var])
    return out


class _Named(io.BytesIO):
    name = "transmit"  # ansible-runner's stream_dir() reads .name of its output


def transmit(job_dir: Path, work_dir: str, files: Mapping[str, str], **job: Any) -> bytes:
    """The job as ``ansible-runner transmit`` writes it; ``job_dir`` is gone afterwards (it held the key)."""
    try:
        shutil.copyfile(ANSIBLE_CFG, job_dir / "ansible.cfg")  # the suite's settings, not the person's paths
        for name, content in files.items():
            (job_dir / name).write_text(content)
        envvars = {**runner_env.ansible_envvars(), "ANSIBLE_CONFIG": f"{work_dir}/ansible.cfg"}
        buffer = _Named()
        ansible_runner.run(streamer="transmit", _output=buffer, private_data_dir=str(job_dir), ident="run",
                           envvars=envvars, quiet=True, suppress_env_files=False, **job)
        return buffer.getvalue()
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def worker_command(runner: Mapping[str, Any], work_dir: str) -> list[str]:
    """The ssh argv that starts the guarded worker on the execution node, as Ansible would log in there."""
    target = node_probe.target_for_node(runner, _ssh_defaults())
    venv = str((runner.get("worker_vars") or {}).get("jexida_worker_runner_venv") or settings.EXEC_NODE_VENV)
    argv = node_probe.ssh_command(target, target.addresses[0], settings.EXEC_NODE_CONNECT_TIMEOUT_S)
    bin_dir = shlex.quote(f"{venv}/bin")
    remote = (f"PATH={bin_dir}:$PATH exec {bin_dir}/python3 {bin_dir}/jexida-worker-guard "
              f"--private-data-dir {shlex.quote(work_dir)} --delete")
    return [*argv[:-1], remote]


def run_streamed(
    runner: Mapping[str, Any],
    hosts: Mapping[str, tuple[Mapping[str, Any], str]],
    *,
    module: str,
    module_args: str,
    timeout_s: int | None,
    on_event: Callable[[dict[str, Any]], bool],
    give_up: Callable[[], bool] | None = None,
) -> StreamedRun:
    """Run ``module`` on ``hosts`` (name -> (connection vars, node-side line)) through the execution node."""
    started = time.monotonic()
    work_dir = f"{settings.EXEC_NODE_WORK_DIR}/jexida-worker-{uuid.uuid4().hex[:12]}"
    files: dict[str, str] = {}
    shipped: dict[str, str] = {}
    inventory = script_inventory(hosts, lambda connection: worker_side(connection, work_dir, files, shipped))
    key_file = private_key(next(iter(hosts.values()))[0])  # one key per job (split_hosts)
    out_dir = runner_env.new_private_dir()

    def failed(why: str) -> StreamedRun:
        return StreamedRun(status="error", rc=None, duration_ms=int((time.monotonic() - started) * 1000),
                           artifact_dir=str(out_dir), error=f"execution node {runner['name']!r}: {why}")

    try:
        ssh_key = Path(os.path.expanduser(key_file)).read_text() if key_file else None
    except OSError as exc:
        return failed(f"cannot build the job: cannot read the private key {key_file}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        return failed(f"cannot build the job: the private key {key_file} is not a text key file ({exc})")
    try:
        stream = transmit(runner_env.new_private_dir(), work_dir, files, inventory=inventory, host_pattern="all",
                          module=module, module_args=module_args, forks=settings.forks_for(len(hosts)),
                          timeout=timeout_s,
                          **({"ssh_key": ssh_key} if ssh_key else {}))
        argv = worker_command(runner, work_dir)
    except OSError as exc:  # no room for the job folder: a result, not a crash of the call
        return failed(f"cannot build the job: {exc.strerror or exc} ({exc.filename or ''})")
    except ValueError as exc:  # the execution node's ssh args do not split (an unclosed quote)
        return failed(f"cannot build the job: {exc}")
    with tempfile.TemporaryFile() as ssh_errors:
        try:
            worker = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=ssh_errors)
        except OSError as exc:
            return failed(f"cannot run ssh: {exc.strerror or exc}")
        gave_up = threading.Event()
        try:
            assert worker.stdin is not None
            # The guard reads "<n>\n" and n bytes; our end stays open for the job's life: closing it cancels.
            worker.stdin.write(b"%d\n" % len(stream) + stream)
            worker.stdin.flush()
        except BrokenPipeError:
            pass
        watcher = threading.Thread(target=_watch, args=(worker, give_up, timeout_s, gave_up), daemon=True)
        watcher.start()
        processed = ansible_runner.run(streamer="process", _input=worker.stdout, private_data_dir=str(out_dir),
                                       ident="run", quiet=True, event_handler=on_event)
        _close(worker)
        worker.wait()
        ssh_errors.seek(0)
        stderr = ssh_errors.read().decode("utf-8", "replace")
    artifacts = out_dir / "artifacts" / "run"
    rc = _read_rc(artifacts / "rc")
    status = "canceled" if gave_up.is_set() else str(processed.status)
    error = ""
    if worker.returncode == 255 and status == "error":
        error = f"execution node {runner['name']!r}: {node_probe.ssh_error_reason(stderr, 255)}"
    elif status == "error" and not gave_up.is_set():
        said = stderr.strip()[-300:] or "no message"
        error = f"execution node {runner['name']!r}: the worker's stream broke ({said})"
    return StreamedRun(status=status, rc=rc, duration_ms=int((time.monotonic() - started) * 1000),
                       artifact_dir=str(artifacts), error=error)


def _read_rc(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):  # no rc (the stream broke) or not a number
        return None


def _close(worker: subprocess.Popen[bytes]) -> None:
    try:
        if worker.stdin is not None and not worker.stdin.closed:
            worker.stdin.close()
    except OSError:
        pass


def _watch(worker: subprocess.Popen[bytes], give_up: Callable[[], bool] | None, timeout_s: int | None,
           gave_up: threading.Event) -> None:
    """Close the worker's stdin (the guard then kills the job there) once the caller gives up, or
    well past the timeout the worker enforces itself (a backstop for a silent execution node)."""
    deadline = time.monotonic() + timeout_s + settings.CONTROLLER_GRACE_S if timeout_s else None
    while worker.poll() is None:
        if (give_up is not None and give_up()) or (deadline is not None and time.monotonic() > deadline):
            gave_up.set()
            _close(worker)
            try:
                worker.wait(timeout=settings.CANCEL_GRACE_S)
            except subprocess.TimeoutExpired:
                worker.kill()
            return
        time.sleep(settings.RUNNER_POLL_S)


__all__ = ["EXECUTION_NODE_VAR", "StreamedRun", "run_streamed", "split_hosts", "worker_side"]
