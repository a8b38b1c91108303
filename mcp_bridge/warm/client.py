"""The thin `ansible` that ansible-runner starts as its ``binary``: it hands the call to the warm server.

Started as ``python -I -S client.py <ansible arguments>`` (no site, no imports beyond the standard
library: it starts in about 15 ms). It passes its stdin/stdout/stderr (ansible-runner's pty),
argv, environment, cwd and umask to the server at $JEXIDA_ANSIBLE_FORKSERVER, forwards the
signals it receives to the call's Ansible, and exits as that Ansible did. When ansible-runner
SIGKILLs it (timeout, cancel) the connection closes and the server ends the call.

No server, or a server that refuses the call (another configuration): it execs the real
`ansible` ($JEXIDA_ANSIBLE_REAL) with the same arguments, the cold path.
"""

import os
import signal
import socket
import struct
import sys

MAGIC = b"JXW1"
FIRST_SEND = 60000  # bytes of the request sent with the descriptors; the rest follows as a stream


def cold(reason: str) -> None:
    real = os.environ.get("JEXIDA_ANSIBLE_REAL") or os.path.join(os.path.dirname(sys.executable), "ansible")
    if os.environ.get("JEXIDA_WARM_DEBUG"):
        os.write(2, f"jexida warm ansible: cold path ({reason})\n".encode())
    os.execv(real, [real, *sys.argv[1:]])


def request() -> bytes:
    umask = os.umask(0)
    os.umask(umask)
    fields = [os.fsencode(os.getcwd()), b"%d" % umask, b"%d" % len(sys.argv)]
    fields += [os.fsencode(arg) for arg in sys.argv]
    fields += [os.fsencode(key) + b"=" + os.fsencode(value) for key, value in os.environ.items()]
    return b"\0".join(fields) + b"\0"


def main() -> None:
    path = os.environ.get("JEXIDA_ANSIBLE_FORKSERVER")
    if not path:
        cold("no server configured")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        payload = request()
        first = MAGIC + struct.pack("!I", len(payload)) + payload[:FIRST_SEND]
        sock.sendmsg([first], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("3i", 0, 1, 2))])
        if len(payload) > FIRST_SEND:
            sock.sendall(payload[FIRST_SEND:])
        replies = sock.makefile("rb")
        line = replies.readline()
    except OSError as exc:
        sock.close()
        cold(str(exc))
        return
    if not line.startswith(b"P "):
        sock.close()
        cold(line.removeprefix(b"F ").decode(errors="replace").strip() or "the server closed the connection")
        return

    def forward(signum: int, _frame: object) -> None:
        try:  # noqa: SIM105  (contextlib would add to the start-up time this file exists to save)
            sock.sendall(b"S %d\n" % signum)
        except OSError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)
    while True:
        try:
            line = replies.readline()
        except InterruptedError:
            continue
        if not line:
            os.write(2, b"jexida warm ansible: the server went away during the call\n")
            os._exit(255)
        if line.startswith(b"X "):
            status = int(line[2:])
            if os.WIFSIGNALED(status):  # die of the same signal, as a cold Ansible would have
                sig = os.WTERMSIG(status)
                os.write(2, b"jexida warm ansible: Ansible was killed by signal %d\n" % sig)
                signal.signal(sig, signal.SIG_DFL)
                os.kill(os.getpid(), sig)
            os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 255)


if __name__ == "__main__":
    main()
