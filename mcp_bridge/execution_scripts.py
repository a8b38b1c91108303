"""The node-side shell the bridge sends: the command wrapper, the launcher of every script, the killer.

Every script reaches the node as a host variable of the per-call inventory (never on a command
line of the controller), and is run by ``ansible.builtin.raw`` through ``/bin/sh`` (see
execution.py for when the shell module takes over). Each layer carries the layer inside it as
base64 **once**, in a shell variable: base64 has no quote, brace or ``{{`` for Ansible or a
shell to interpret, and ``printf`` is a shell builtin, so the size of the variable is never an
argument of ``exec``. (The first version printed each layer's base64 twice, for the ``base64
-D`` fallback, which made a script 7.3 times the command's size and commands over ~17 kB fail.)
"""

from __future__ import annotations

import base64
import re
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

MAX_EVENT_RES = 16 * 1024 * 1024
META_MARKER = "__JEXIDA_META__"
# The first line every script writes to stderr: what ssh printed before it (a known-hosts
# warning, "ControlSocket ... already exists") is not the command's output.
BEGIN_MARKER = "__JEXIDA_BEGIN__"

# Runs the user's command on the node. The command arrives base64-encoded (data, never
# parsed by a shell on either side until the node's bash reads it from a file); its output
# is spooled to files on the node and only head + tail come back, so neither the network
# nor the bridge ever holds more than the cap. `timeout` kills the command's whole process
# group on the node when the time is up.
# The comments stay in the file; the node gets only the code.
_WRAPPER = "\n".join(
    line for line in (Path(__file__).parent / "run_wrapper.sh").read_text().splitlines() if not line.startswith("#")
)


def _decode_into(variable: str, encoded: str, target: str) -> str:
    """Shell that writes the base64 ``encoded`` (held once, in ``variable``) decoded to ``target``."""
    return (f'{variable}={encoded}; {{ printf %s "${variable}" | base64 -d 2>/dev/null || '
            f'printf %s "${variable}" | base64 -D; }} > {target};')


def wrap_command(command: str, timeout_s: int, output_cap: int) -> str:
    """The node-side script that runs ``command`` with a timeout and capped output."""
    # Both streams twice (stdout and stdout_lines) must stay under what ansible-runner passes on.
    cap = min(max(int(output_cap), 64), MAX_EVENT_RES // 6)
    return (
        _WRAPPER.replace("@DECODE@", _decode_into("c", base64.b64encode(command.encode()).decode(), '"$D/c"'))
        .replace("@T@", str(max(int(timeout_s), 0)))
        .replace("@C@", str(cap))
        .replace("@H@", str(cap // 2))
        .replace("@M@", META_MARKER)
    )


# Every node-side script runs in a private folder of its run, named by the bridge, so that a
# cancel can find the run's process (its pid file) and signal it the way a timeout does.
# A script's exit code 255 becomes 254: ssh (and so Ansible's raw) reads 255 as "could not
# connect", which would make a command that exits 255 look like an unreachable node (and be
# retried elsewhere). The wrapper's META line keeps the real code.
_RUN_BASE = "${TMPDIR:-/tmp}/jexida-$(id -u)"
_LAUNCHER = " ".join((
    f"printf '%s\\n' {BEGIN_MARKER} >&2; @CD@umask 077; b={_RUN_BASE};",
    'mkdir -p "$b" && [ -O "$b" ] && [ ! -L "$b" ] || { echo "jexida: $b is not a private folder of this user" >&2;',
    'exit 97; }; d="$b/@RID@";',
    'if ! mkdir "$d" 2>/dev/null; then if [ -f "$d/canceled" ]; then rm -rf "$d";',
    """printf '\\n@M@ {"rc": 143, "stdout_bytes": 0, "stderr_bytes": 0, "timed_out": 0, "canceled": 1}\\n' >&2;""",
    'exit 143; fi; echo "jexida: run folder $d exists" >&2; exit 97; fi;',
    "@DECODE@",
    'sh "$d/run.sh"; rc=$?; rm -rf "$d"; [ $rc -ne 255 ] || rc=254; exit $rc',
))
# A node on a local connection (the controller) would otherwise run in ansible-runner's private
# data folder, which holds the call's inventory: start where an ssh login starts, at home.
_CD_HOME = 'cd "$HOME" 2>/dev/null || cd /; '

# Stops runs by id: TERM to the pid the wrapper recorded (`timeout`, which passes it to the whole
# process group, then KILL after 5 s). A run that has not started yet is marked so it never does;
# such marks older than 10 minutes (runs that ended meanwhile) are cleared.
_KILLER = " ".join((
    f"printf '%s\\n' {BEGIN_MARKER} >&2;",
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


def encoded_script(script: str, run_id: str | None = None, local: bool = False) -> str:
    """A shell line that runs ``script`` with sh on the node, in the private folder of run ``run_id``.

    ``local``: the node is on a local connection (start at home, not in ansible-runner's folder).
    """
    run_id = run_id or new_run_id()
    if not _RUN_ID.match(run_id):
        raise ValueError(f"bad run id {run_id!r}")
    decode = _decode_into("s", base64.b64encode(script.encode()).decode(), '"$d/run.sh"')
    return (_LAUNCHER.replace("@RID@", run_id).replace("@M@", META_MARKER).replace("@CD@", _CD_HOME if local else "")
            .replace("@DECODE@", decode))


def kill_script(run_ids: Sequence[str]) -> str:
    """A shell line that stops these runs on a node (see _KILLER); prints stopped/prevented/gone per run."""
    bad = [r for r in run_ids if not _RUN_ID.match(r)]
    if bad:
        raise ValueError(f"bad run ids {bad!r}")
    return _KILLER.replace("@RIDS@", " ".join(run_ids))


def script_inventory(hosts: Mapping[str, tuple[Mapping[str, Any], str]],
                     host_vars: Callable[[Mapping[str, Any]], dict[str, Any]] = dict) -> dict[str, Any]:
    """The per-call inventory: each host's vars (``host_vars`` of its connection vars) and its line.

    The line most hosts share is written once, as a var of ``all``; only the others are host vars
    (which win over it). A broadcast's script then travels once, not once per host: at 100 hosts a
    200 kB script would otherwise make a 20 MB inventory, sent to an execution node in full.
    """
    shared = Counter(line for _, line in hosts.values()).most_common(1)
    common = shared[0][0] if shared and shared[0][1] > 1 else None
    return {"all": {
        **({"vars": {"jexida_script": common}} if common is not None else {}),
        "hosts": {
            # use_tty off as a host var: it beats the person's inventory and ANSIBLE_SSH_USETTY.
            name: {**host_vars(connection), "ansible_ssh_use_tty": False,
                   **({"jexida_script": line} if line != common else {})}
            for name, (connection, line) in hosts.items()
        },
    }}
