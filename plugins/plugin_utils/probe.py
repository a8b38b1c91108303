# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""Probing nodes for the jexida inventory: one SSH round trip per node, all in parallel.

The probe speaks to each node exactly the way Ansible's ssh connection would (user, port,
key, ssh args, ControlPath), so it leaves a warm ControlPersist master for the next Ansible
run to the node. The bridge's `check_worker_node` uses the same code for one node.
"""

from __future__ import annotations

import os
import re
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha1
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.loader import connection_loader
from ansible.utils.path import unfrackpath
from ansible_collections.jexida.cluster.plugins.plugin_utils.facts import (
    UNPARSEABLE,
    empty_facts,
    parse_probe_output,
    probe_script,
)
from ansible_collections.jexida.cluster.plugins.plugin_utils.worker import default_job_dir

DEFAULT_CONTROL_PATH_DIR = "~/.ansible/cp"
# The connections that run on the controller itself (the plugin's short name and its FQCN).
LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")

# ssh errors that mean "nobody answered at this address": retried, then the next address.
_NO_ANSWER = re.compile(
    r"could not resolve|name or service not known|nodename nor servname|temporary failure in name resolution"
    r"|no address associated|timed out|connection refused|no route to host|network is unreachable"
    r"|host is down|connection reset|connection closed by|kex_exchange_identification|banner exchange",
    re.IGNORECASE,
)


def control_path(host: str, port: int | None, user: str | None,
                 directory: str = DEFAULT_CONTROL_PATH_DIR, template: str | None = None) -> str:
    """The ControlPath Ansible's ssh connection plugin uses for host/port/user.

    Same recipe as ``Connection._create_control_path``: the first 10 hex digits of
    sha1("<host>-<port>-<user>") in the control_path_dir (default ~/.ansible/cp), or the
    configured control_path template with ``%(directory)s`` filled in.
    """
    cpdir = unfrackpath(directory)
    if template:
        return template % {"directory": cpdir}
    digest = sha1(f"{host}-{port}-{user}".encode(), usedforsecurity=False).hexdigest()
    return f"{cpdir}/{digest[:10]}"


@dataclass(frozen=True)
class ProbeTarget:
    """How to reach one node: what Ansible's ssh connection would use for it."""

    name: str
    addresses: tuple[str, ...]  # host first, then fallback_hosts
    port: int = 22
    user: str | None = None
    local: bool = False
    unsupported: str | None = None  # a connection plugin the probe cannot speak
    ssh_executable: str = "ssh"
    ssh_args: tuple[str, ...] = ()
    common_args: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    private_key_file: str | None = None
    host_key_checking: bool = True
    control_path_dir: str = DEFAULT_CONTROL_PATH_DIR
    control_path_template: str | None = None
    job_dir: str | None = None  # the node's own (host var jexida_worker_job_dir), else the probe's
    # The bastion of a node with `via` (its ProxyCommand is already in common_args): used only to
    # say why the node did not answer, and in the signature (another bastion: probe again).
    jump: ProbeTarget | None = None

    def signature(self) -> list[Any]:
        """What the cached facts depend on: a change means probe again."""
        return [list(self.addresses), self.port, self.user, self.local, self.unsupported, self.job_dir,
                self.jump.signature() if self.jump else None]


@dataclass
class ProbeSettings:
    job_dir: str = field(default_factory=default_job_dir)
    connect_timeout: int = 2
    deadline: float = 10.0
    retries: int = 1
    forks: int = 64
    ssh_defaults: dict[str, Any] = field(default_factory=dict)


def ansible_ssh_defaults() -> dict[str, Any]:
    """The ssh connection plugin's settings from Ansible's config (ansible.cfg, env, defaults)."""
    # The plugin's options are known to the config manager only once the plugin is loaded.
    connection_loader.get("ssh", class_only=True)
    settings: dict[str, Any] = {}
    for option in ("ssh_executable", "ssh_args", "ssh_common_args", "ssh_extra_args", "private_key_file",
                   "host_key_checking", "control_path", "control_path_dir", "remote_user"):
        try:
            settings[option] = C.config.get_config_value(option, plugin_type="connection", plugin_name="ssh")
        except AnsibleError:
            settings[option] = None
    return settings


def _first_var(host_vars: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if host_vars.get(name) not in (None, ""):
            return host_vars[name]
    return None


def _split(args: Any) -> tuple[str, ...]:
    return tuple(shlex.split(str(args))) if args else ()


def target_for_node(node: Mapping[str, Any], ssh_defaults: Mapping[str, Any] | None = None) -> ProbeTarget:
    """The probe target for a registry node: its vars first, then Ansible's ssh settings."""
    defaults = ssh_defaults or {}
    host_vars = node.get("vars") or {}
    connection = str(_first_var(host_vars, "ansible_connection") or "ssh")
    local = connection in LOCAL_CONNECTIONS
    unsupported = None
    if not local and connection not in ("ssh", "ansible.builtin.ssh", "smart", "paramiko", "paramiko_ssh",
                                        "ansible.builtin.paramiko_ssh"):
        unsupported = connection
    hkc = _first_var(host_vars, "ansible_ssh_host_key_checking", "ansible_host_key_checking")
    if hkc is None:
        hkc = defaults.get("host_key_checking", True)
    key = _first_var(host_vars, "ansible_ssh_private_key_file", "ansible_private_key_file")
    return ProbeTarget(
        name=str(node["name"]),
        addresses=tuple(str(a) for a in [node.get("host") or node["name"], *(node.get("fallback_hosts") or [])]),
        port=int(node.get("port") or 22),
        user=str(node.get("user") or defaults.get("remote_user") or "") or None,
        local=local,
        unsupported=unsupported,
        ssh_executable=str(_first_var(host_vars, "ansible_ssh_executable") or defaults.get("ssh_executable") or "ssh"),
        ssh_args=_split(_first_var(host_vars, "ansible_ssh_args") or defaults.get("ssh_args")),
        common_args=_split(_first_var(host_vars, "ansible_ssh_common_args") or defaults.get("ssh_common_args")),
        extra_args=_split(_first_var(host_vars, "ansible_ssh_extra_args") or defaults.get("ssh_extra_args")),
        private_key_file=str(key or defaults.get("private_key_file") or "") or None,
        host_key_checking=str(hkc).lower() not in ("false", "no", "0", "off"),
        control_path_dir=str(_first_var(host_vars, "ansible_control_path_dir")
                             or defaults.get("control_path_dir") or DEFAULT_CONTROL_PATH_DIR),
        control_path_template=str(_first_var(host_vars, "ansible_control_path")
                                  or defaults.get("control_path") or "") or None,
        job_dir=str(_first_var(host_vars, "jexida_worker_job_dir") or "") or None,
    )


def ssh_command(target: ProbeTarget, address: str, connect_timeout: int = 2) -> list[str]:
    """The ssh argv that runs ``/bin/sh -s`` on ``address``, in the order Ansible builds its own.

    BatchMode and ConnectTimeout come first so they win (ssh keeps the first value of an
    option); ControlMaster/ControlPersist come last, so configured ones win; the ControlPath
    is Ansible's, so the master this starts serves the next Ansible run to the host.
    """
    argv = [target.ssh_executable, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(connect_timeout)}",
            *target.ssh_args]
    if not target.host_key_checking:
        argv += ["-o", "StrictHostKeyChecking=no"]
    argv += ["-o", f"Port={target.port}"]
    if target.private_key_file:
        argv += ["-o", f'IdentityFile="{os.path.expanduser(target.private_key_file)}"']
    argv += ["-o", "KbdInteractiveAuthentication=no",
             "-o", "PreferredAuthentications=gssapi-with-mic,gssapi-keyex,hostbased,publickey",
             "-o", "PasswordAuthentication=no"]
    if target.user:
        argv += ["-o", f'User="{target.user}"']
    argv += [*target.common_args, *target.extra_args]
    given = " ".join(argv).lower()
    if "controlpath" not in given:
        path = control_path(address, target.port, target.user, target.control_path_dir, target.control_path_template)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        argv += ["-o", f'ControlPath="{path}"']
    if "controlmaster" not in given:
        argv += ["-o", "ControlMaster=auto"]
    if "controlpersist" not in given:
        argv += ["-o", "ControlPersist=60s"]
    return [*argv, address, "/bin/sh -s"]


# What ssh says when its ProxyCommand ended before the node's greeting: the hop's own
# lines above it say why, so those are the reason.
_PROXY_CLOSED = re.compile(r"^(kex_exchange_identification: )?connection closed by (unknown port 65535|remote host)",
                           re.IGNORECASE)


def ssh_error_reason(stderr: str, returncode: int | None) -> str:
    """The line of ssh's stderr that says what went wrong (through a bastion: the hop's lines)."""
    lines = [line.strip() for line in (stderr or "").splitlines()
             if line.strip() and not line.lstrip().startswith(("Warning:", "debug"))]
    hop = [line for line in lines if not _PROXY_CLOSED.match(line)]
    if hop and len(hop) < len(lines):
        return "; ".join(dict.fromkeys(hop))[-300:]
    if lines:
        return lines[-1][:300]
    return f"ssh exited with rc {returncode} and no message"


def explain_jump_failure(reason: str, bastion: str, bastion_facts: Mapping[str, Any] | None) -> str:
    """A node behind ``bastion`` did not answer: say whether the bastion itself did."""
    if bastion_facts is not None and bastion_facts.get("reachable") is False:
        return f"bastion {bastion!r} is unreachable: {bastion_facts.get('error') or 'no answer'}"
    if bastion_facts is not None and bastion_facts.get("reachable"):
        hint = ""
        if any(word in reason.lower() for word in ("administratively prohibited", "stdio forwarding", "open refused")):
            hint = (f"; {bastion!r} refuses to forward for this user: bootstrap it with "
                    f"jexida_worker_allow_jump=true (and the node's address:port in jexida_worker_jump_permit_open, "
                    f"if that list is set)")
        return f"{reason} (through bastion {bastion!r}, which answers){hint}"
    return f"{reason} (through bastion {bastion!r})"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# After ssh exits, how long to keep reading what it wrote before it ended.
_DRAIN_S = 0.2


def _run(argv: list[str], stdin: bytes, timeout: float) -> tuple[int, bytes, bytes]:
    """Run argv in its own process group; at the timeout the whole group is killed.

    Killing only ssh is not enough: a ProxyCommand (or anything else it started) would keep
    the pipes open and the read would wait for it. For the same reason the output is read
    until ssh exits, not until EOF: when this ssh becomes a ControlPersist master through a
    bastion, the master (a session of its own) keeps its ProxyCommand, and that hop holds
    ssh's stderr open for as long as the master lives. Ansible's ssh connection reads the
    same way.
    """
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    if proc.stdin is None or proc.stdout is None or proc.stderr is None:  # PIPE above: never None
        raise RuntimeError("subprocess pipes missing")
    deadline = time.monotonic() + timeout
    out: list[bytes] = []
    err: list[bytes] = []
    sinks = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    try:
        with suppress(BrokenPipeError):
            proc.stdin.write(stdin)  # a few KiB: fits in the pipe, so this never blocks
            proc.stdin.close()
        exited_at: float | None = None
        with selectors.DefaultSelector() as selector:
            for fd in sinks:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                now = time.monotonic()
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at > _DRAIN_S:
                    break
                if exited_at is None and now >= deadline:
                    raise subprocess.TimeoutExpired(argv, timeout)
                for key, _events in selector.select(timeout=0.05):
                    data = os.read(key.fd, 65536)
                    if data:
                        sinks[key.fd].append(data)
                    else:
                        selector.unregister(key.fd)
        returncode = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            with suppress(OSError):
                pipe.close()
    return returncode, b"".join(out), b"".join(err)


def probe_node(target: ProbeTarget, settings: ProbeSettings, deadline_at: float | None = None,
               explain_jump: bool = True) -> dict[str, Any]:
    """Probe one node (ssh, or locally for local connections); never raises.

    Returns a full ``jexida_facts`` dict without ``load_group``. A node behind a bastion that
    does not answer gets the bastion probed too (within the deadline), so the error says
    which hop failed; ``explain_jump=False`` leaves that to the caller (probe_nodes, which
    probes the bastion anyway).
    """
    started = time.monotonic()
    deadline_at = deadline_at if deadline_at is not None else started + settings.deadline
    facts = empty_facts()
    facts.update(probed_at=_now(), reachable=False)
    script = probe_script(target.job_dir or settings.job_dir).encode()
    failures: list[str] = []
    if target.unsupported:
        failures.append(f"cannot probe over connection {target.unsupported!r}")
    addresses = target.addresses[:1] if target.local else target.addresses
    for address in addresses if not target.unsupported else ():
        attempts = 1 if target.local else 1 + max(0, settings.retries)
        reason = ""
        for attempt in range(attempts):
            remaining = deadline_at - time.monotonic()
            if remaining <= 0:
                reason = f"no answer within the {settings.deadline:g}s probe deadline"
                break
            try:
                argv = ["/bin/sh", "-s"] if target.local else ssh_command(target, address, settings.connect_timeout)
                returncode, stdout, stderr = _run(argv, script, remaining)
            except subprocess.TimeoutExpired:
                reason = f"no answer within the {settings.deadline:g}s probe deadline"
                break
            except OSError as exc:  # no ssh binary, an unwritable control path folder, ...
                reason = f"cannot run the probe: {exc.strerror or exc} ({exc.filename or 'ssh'})"
                break
            try:
                parsed = parse_probe_output(stdout.decode("utf-8", "replace"))
            except ValueError:
                if target.local or returncode != 255:
                    reason = UNPARSEABLE
                    break
                reason = ssh_error_reason(stderr.decode("utf-8", "replace"), returncode)
                if _NO_ANSWER.search(reason) and attempt + 1 < attempts:
                    time.sleep(min(0.2, max(0.0, deadline_at - time.monotonic())))
                    continue
                break
            facts.update(parsed, reachable=True, address=address, error=None,
                         probe_ms=int((time.monotonic() - started) * 1000))
            return facts
        failures.append(reason if len(addresses) == 1 else f"{address}: {reason}")
        # Only "nobody answered" moves on to the next address: an auth failure or garbage
        # means this address is the node, and the next one would not be better.
        if not _NO_ANSWER.search(reason):
            break
    facts.update(error="; ".join(failures) or "not probed", probe_ms=int((time.monotonic() - started) * 1000))
    if target.jump is not None and explain_jump:
        bastion = probe_node(target.jump, settings, deadline_at) if time.monotonic() < deadline_at else None
        facts["error"] = explain_jump_failure(facts["error"], target.jump.name, bastion)
    return facts


def probe_nodes(targets: Sequence[ProbeTarget], settings: ProbeSettings | None = None) -> dict[str, dict[str, Any]]:
    """Probe all targets in parallel within ``settings.deadline``; {name: jexida_facts}. Never raises."""
    settings = settings or ProbeSettings()
    if not targets:
        return {}
    deadline_at = time.monotonic() + settings.deadline
    results: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(settings.forks, len(targets))),
                            thread_name_prefix="jexida-probe") as pool:
        futures = {target.name: pool.submit(probe_node, target, settings, deadline_at, False) for target in targets}
        for name, future in futures.items():
            try:
                # Every probe ends by itself at the deadline (subprocess timeout); this is a backstop.
                results[name] = future.result(timeout=max(0.0, deadline_at - time.monotonic()) + 5)
            except Exception as exc:  # a probe must never fail the inventory
                facts = empty_facts()
                facts.update(reachable=False, probed_at=_now(), error=f"probe failed: {exc or type(exc).__name__}")
                results[name] = facts
    # A node behind a bastion that did not answer: say which hop failed, from the bastion's own
    # probe in this round (or one now, for a bastion that is not probed itself, such as an inactive one).
    extra: dict[str, dict[str, Any]] = {}  # bastions probed only for this: not part of the answer
    for target in targets:
        facts = results[target.name]
        if target.jump is None or facts.get("reachable"):
            continue
        bastion = results.get(target.jump.name) or extra.get(target.jump.name)
        if bastion is None and time.monotonic() < deadline_at:
            bastion = extra[target.jump.name] = probe_node(target.jump, settings, deadline_at)
        facts["error"] = explain_jump_failure(str(facts.get("error")), target.jump.name, bastion)
    return results
