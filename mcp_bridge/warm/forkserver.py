"""The warm Ansible: a pre-imported `ansible` (ad-hoc CLI) that forks one clean copy per call.

Run by the bridge (manager.py) as ``python forkserver.py SOCKET REAL_ANSIBLE`` with the
environment ansible-runner gives our calls; a call reaches it through client.py, which
ansible-runner starts as its ``binary``. Importing Ansible and loading its plugins costs about
0.35 s of every cold `ansible`; here it is paid once.

Per call (one connection on the unix socket)::

    server --fork--> supervisor (holds the connection) --fork--> ansible child

- The server never runs Ansible code: it accepts, forks and reaps. Every call therefore starts
  from the same pre-imported state, and a crash stays inside one call.
- The supervisor checks the caller (same uid) and the call's configuration (the gate below),
  then forks the child and relays: signals from the client go to the child's process group;
  the child's exit status goes back. When the client goes away (ansible-runner SIGKILLs it on a
  timeout or cancel) it SIGKILLs the child **and every process below it**: Ansible's workers
  call setsid(), so the process group alone would miss them and their ssh clients.
- The child becomes the call's `ansible`: its own session, the client's stdin/stdout/stderr
  (ansible-runner's pty), argv, environment, cwd and umask, then ``AdHocCLI.cli_executor``.

The gate: Ansible fixes its configuration when it is imported (``ansible.constants`` resolves
every base setting from the environment and the ini file, and copies of those values live in
many modules). A call may use this server only when everything read at import time is what the
server was started with; otherwise the server answers ``F`` and the client execs the real
`ansible` (the cold path, same behaviour, just slower). Plugin options (connection, become,
cache, callback) are read per call from the live environment and host vars, so they may differ.

Wire format (client -> server): one sendmsg with SCM_RIGHTS [fd0, fd1, fd2] and
``JXW1`` + u32 length + payload (NUL-separated: cwd, umask, argc, argv..., "K=V"...), the rest
of the payload in further sends. Server -> client lines: ``P <pid>`` started, ``F <reason>``
refused, ``X <wait status>`` finished. Client -> server lines: ``S <signum>``.

Only the standard library is imported at module level: the bridge imports this module for the
gate (``projection``) without importing Ansible.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import hashlib
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Mapping

MAGIC = b"JXW1"
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# Set per call by ansible-runner and read lazily (when the jsonfile cache plugin loads).
PER_CALL = frozenset({"ANSIBLE_CACHE_PLUGIN_CONNECTION"})
# Read at import time (by Ansible's config, Python's start-up, locale set-up, ansible-runner's
# awx_display callback) besides the ANSIBLE_* variables.
IMPORT_TIME = frozenset({
    "AD_HOC_COMMAND_ID", "ORIGINAL_STDOUT_CALLBACK", "AWX_LIB_DIRECTORY", "RUNNER_OMIT_EVENTS",
    "RUNNER_ONLY_FAILED_EVENTS", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TMPDIR", "TMP", "TEMP",
    "EDITOR", "PAGER", "NO_COLOR",
})


def _relevant(name: str) -> bool:
    if name in PER_CALL:
        return False
    return name.startswith(("ANSIBLE_", "_ANSIBLE_", "LC_", "PYTHON")) or name in IMPORT_TIME


def projection(env: Mapping[str, str]) -> dict[str, str]:
    """What of an environment Ansible fixes at import time, with the ansible.cfg it names (hashed).

    Without ANSIBLE_CONFIG, Ansible would search the call's cwd for an ansible.cfg: such a call
    never matches (the bridge always names its file)."""
    kept = {k: v for k, v in env.items() if _relevant(k)}
    path = env.get("ANSIBLE_CONFIG")
    try:
        with open(path or "", "rb") as handle:
            kept["\0cfg"] = hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        kept["\0cfg"] = "unreadable"
    return kept


def preload() -> None:
    """Import Ansible and load (class only) what an ad-hoc raw or shell call uses."""
    # Imported for their side effect: the modules stay loaded in every forked call.
    import ansible.cli.adhoc  # constants, config, Display, the collection loader
    from ansible import constants as C
    from ansible.plugins import loader as L

    L.init_plugin_loader([])  # the CLI calls it again in the child: a no-op (its warning is filtered)
    import ansible.executor.process.worker
    import ansible.executor.task_executor
    import ansible.executor.task_queue_manager
    import ansible.inventory.manager
    import ansible.playbook.play
    import ansible.vars.manager  # noqa: F401

    # Plugin classes and their DOCUMENTATION-derived option definitions are cached by the loaders.
    # Not ansible-runner's awx_display: it reads the call's AWX_ISOLATED_DATA_DIR when imported.
    for name in C.INVENTORY_ENABLED:
        L.inventory_loader.get(name, class_only=True)
    for plugin_loader, names in (
        (L.connection_loader, ("ssh", "local")),
        (L.shell_loader, ("sh",)),
        (L.become_loader, ("sudo", "su")),
        (L.action_loader, ("raw", "command", "shell", "normal")),
        (L.strategy_loader, ("linear", "free")),
        (L.callback_loader, ("minimal", "default")),
        (L.cache_loader, ("jsonfile", "memory")),
    ):
        for name in names:
            plugin_loader.get(name, class_only=True)
    L.module_loader.find_plugin("ansible.builtin.shell")
    L.module_loader.find_plugin("ansible.builtin.command")


def _recv_request(conn: socket.socket) -> tuple[list[int], bytes]:
    fds = array.array("i")
    message, ancillary, _flags, _address = conn.recvmsg(65536, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if message[:4] != MAGIC or len(message) < 8:
        raise ValueError("not a warm-ansible request")
    (length,) = struct.unpack("!I", message[4:8])
    payload = bytearray(message[8:])
    while len(payload) < length:
        chunk = conn.recv(min(1 << 20, length - len(payload)))
        if not chunk:
            raise ValueError("short request")
        payload += chunk
    return list(fds), bytes(payload)


def _parse(payload: bytes) -> tuple[str, int, list[str], dict[str, str]]:
    parts = payload.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    argc = int(parts[2])
    argv = [os.fsdecode(p) for p in parts[3: 3 + argc]]
    env = {}
    for item in parts[3 + argc:]:
        key, _, value = os.fsdecode(item).partition("=")
        env[key] = value
    return os.fsdecode(parts[0]), int(parts[1]), argv, env


def _run_child(fds: list[int], cwd: str, umask: int, argv: list[str], env: dict[str, str]) -> None:
    """In the forked child: become the call's `ansible`, run the ad-hoc CLI, never return."""
    code = 250
    try:
        os.setsid()  # a session and process group of its own, as ansible-runner's pty child has
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a dead supervisor leaves no orphan
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.set_wakeup_fd(-1)
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
        os.closerange(3, 65536)  # the listening socket, the call's socket: not Ansible's
        os.umask(umask)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = [REAL_ANSIBLE, *argv[1:]]  # argv[0] also locates `ansible` for ssh's SSH_ASKPASS
        import secrets
        import warnings

        warnings.filterwarnings("ignore", message="AnsibleCollectionFinder has already been configured")
        # Per-process identity Ansible computes at import: task and play uuids must not repeat.
        import ansible.utils.vars as ansible_vars

        ansible_vars.random_int = f"{secrets.randbelow(ansible_vars._MAXSIZE):08x}"[:8]
        ansible_vars.cur_id = 0
        from ansible.cli.adhoc import AdHocCLI
        from ansible.utils.display import Display

        Display()._set_column_width()  # measured at import, when stdout was not the call's pty
        try:
            AdHocCLI.cli_executor(sys.argv)
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 250
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _descendants(root: int) -> list[int]:
    """Processes below ``root``, by parent pid, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    stat = handle.read()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rindex(b")") + 2:].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _is_mux_master(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"[mux]" in handle.read()
    except OSError:
        return False


def _kill_call(child: int) -> None:
    """SIGKILL the call's Ansible and everything below this supervisor, except ssh ControlPersist
    masters: other calls share them (they only end up here because this supervisor is a subreaper)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child, signal.SIGKILL)
    for pid in _descendants(os.getpid()):
        if not _is_mux_master(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _supervise(conn: socket.socket) -> None:
    """One call: check it, fork its Ansible, relay signals and the exit status."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    if uid != os.getuid():  # the socket means "run Ansible as me": only for this user
        conn.sendall(b"F another user\n")
        return
    fds, payload = _recv_request(conn)
    cwd, umask, argv, env = _parse(payload)
    if len(fds) != 3:
        conn.sendall(b"F no stdio\n")
        return
    if projection(env) != BASE:
        conn.sendall(b"F configuration differs from the warm server's\n")
        return
    child = os.fork()
    if child == 0:
        _run_child(fds, cwd, umask, argv, env)
    for fd in fds:
        os.close(fd)  # only the child holds the pty now
    conn.sendall(b"P %d\n" % child)
    pidfd = os.pidfd_open(child)
    buffer, status, client_gone = b"", None, False
    while status is None:
        readable, _, _ = select.select([pidfd] if client_gone else [pidfd, conn], [], [])
        if conn in readable:
            data = conn.recv(4096)
            if not data:  # ansible-runner killed the client (timeout, cancel): end the call now
                client_gone = True
                _kill_call(child)
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.startswith(b"S "):
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.killpg(child, int(line[2:]))
        if pidfd in readable:
            _, status = os.waitpid(child, 0)
    if client_gone:
        _kill_call(child)  # workers that were still being started
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # reap the killed orphans (not the ssh masters)
            try:
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            except ChildProcessError:
                break
            if all(_is_mux_master(p) for p in _descendants(os.getpid())):
                break
            time.sleep(0.01)
        return
    with contextlib.suppress(OSError):
        conn.sendall(b"X %d\n" % status)


def _fork_supervisor(listener: socket.socket, wake: tuple[int, int]) -> None:
    conn, _ = listener.accept()
    if os.fork() == 0:
        code = 0
        try:
            listener.close()
            signal.set_wakeup_fd(-1)
            for fd in wake:
                os.close(fd)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _supervise(conn)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    conn.close()


def serve(path: str) -> None:
    """Accept calls until SIGTERM or until the bridge goes (EOF on stdin, the bridge's pipe)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    listener.bind(path + ".new")
    os.umask(old)
    listener.listen(128)
    os.rename(path + ".new", path)  # the path appears only once calls can connect: it means "ready"
    wake_r, wake_w = os.pipe()  # SIGCHLD wakes select (PEP 475 would retry it silently and leave zombies)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    print("ready", flush=True)
    try:
        while True:
            readable, _, _ = select.select([listener, wake_r, sys.stdin], [], [])
            if wake_r in readable:
                os.read(wake_r, 4096)
            while True:  # reap finished supervisors
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
            if sys.stdin in readable and not os.read(sys.stdin.fileno(), 4096):
                return  # the bridge is gone
            if listener in readable:
                _fork_supervisor(listener, (wake_r, wake_w))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def main() -> None:
    global BASE, REAL_ANSIBLE
    socket_path, REAL_ANSIBLE = sys.argv[1], sys.argv[2]
    # sys.exit runs atexit: Ansible removes the ~/.ansible/tmp/ansible-local-* folder it made at import.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    BASE = projection(os.environ)  # before any import can touch the environment
    sys.argv = [REAL_ANSIBLE]
    preload()
    sys.stdout.flush()
    serve(socket_path)


BASE: dict[str, str] = {}
REAL_ANSIBLE = ""

if __name__ == "__main__":
    main()
