"""The bridge's side of the warm Ansible: start the fork server, route calls to it, restart, stop.

A call uses the warm server through ansible-runner's ``binary`` option: ansible-runner still
builds the command line, the environment, the pty, the events and the artifacts exactly as for
a cold call; only the process it starts is the thin client instead of `ansible`. With a binary
ansible-runner leaves out ``-m``/``-a``/the pattern and its ad-hoc environment, so the call
passes them itself (``cmdline``, ``ANSIBLE_LOAD_CALLBACK_PLUGINS``, ``AD_HOC_COMMAND_ID``).

Nothing here is needed for a call to work: whenever the server is not (yet) running, has died,
or was started with another configuration, the call runs cold, and the server is (re)started in
the background for the next calls.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcp_bridge import settings
from mcp_bridge.warm.forkserver import projection

HERE = Path(__file__).resolve().parent
SERVER = HERE / "forkserver.py"
CLIENT = HERE / "client.py"
# Set by ansible-runner per call; the server's environment is a call's minus these.
PER_CALL_ENV = ("AWX_ISOLATED_DATA_DIR", "ANSIBLE_CACHE_PLUGIN_CONNECTION")


def real_ansible() -> str | None:
    """The `ansible` beside this interpreter (the bridge's venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "ansible"
    return str(beside) if beside.exists() else shutil.which("ansible")


class WarmAnsible:
    """One fork server per bridge process. Thread-safe; every method returns quickly."""

    def __init__(self, log_path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self._key: dict[str, str] | None = None
        self._started_at = 0.0
        self._young_deaths = 0
        self._log_path = log_path
        self.real = real_ansible()
        self.usable = sys.platform.startswith("linux") and self.real is not None and hasattr(os, "pidfd_open")
        atexit.register(self.close)

    @property
    def socket_path(self) -> str | None:
        return os.path.join(self._dir, "s") if self._dir else None

    def ready(self) -> bool:
        path = self.socket_path
        return self._proc is not None and self._proc.poll() is None and path is not None and os.path.exists(path)

    def server_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, envvars: Mapping[str, str]) -> None:
        """Start the server for calls with these envvars (no-op when it runs with them already)."""
        if self.usable:
            with self._lock:
                self._ensure(envvars)

    def _ensure(self, envvars: Mapping[str, str]) -> bool:
        """Under the lock: True when a ready server serves ``envvars``. Never raises: the warm server is
        only a shortcut, so whatever goes wrong here leaves the calls cold (and says so once)."""
        try:
            return self._ensure_running(envvars)
        except Exception as exc:
            print(f"jexida: the warm Ansible server cannot be used ({exc}): commands run cold",
                  file=sys.stderr, flush=True)
            self.usable = False
            return False

    def runner_kwargs(self, envvars: Mapping[str, str], module: str, module_args: str,
                      host_pattern: str) -> dict[str, Any] | None:
        """ansible_runner.run arguments that send this call to the warm server, or None: run it cold."""
        if not self.usable:
            return None
        with self._lock:
            if not self._ensure(envvars):
                return None
            path = self.socket_path
        assert path is not None and self.real is not None
        return {
            "binary": sys.executable,
            "cmdline": shlex.join(["-I", "-S", str(CLIENT), "-m", module, "-a", module_args, host_pattern]),
            "envvars": {**envvars, **self._call_env(path)},
        }

    def _call_env(self, path: str) -> dict[str, str]:
        assert self.real is not None
        return {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "AD_HOC_COMMAND_ID": "1",
                "JEXIDA_ANSIBLE_FORKSERVER": path, "JEXIDA_ANSIBLE_REAL": self.real}

    def _ensure_running(self, envvars: Mapping[str, str]) -> bool:
        """True when a ready server matches ``envvars``; else (re)start it if allowed."""
        key = projection({**os.environ, **envvars})
        alive = self._proc is not None and self._proc.poll() is None
        if alive and key == self._key:
            return self.ready()
        if self._proc is not None and not alive:
            if time.monotonic() - self._started_at < settings.WARM_YOUNG_S:
                self._young_deaths += 1
            self._stop()
            if self._young_deaths >= settings.WARM_GIVE_UP_AFTER:
                if self.usable:
                    print("jexida: the warm Ansible server keeps dying: commands run cold from now on "
                          f"(see {self._log_path})", file=sys.stderr, flush=True)
                self.usable = False
                return False
            if time.monotonic() - self._started_at < settings.WARM_RESTART_PAUSE_S:
                return False
        elif alive:  # another configuration: this server would refuse every call
            self._stop()
        self._launch(envvars, key)
        return False

    def _server_env(self, envvars: Mapping[str, str]) -> dict[str, str]:
        """The environment ansible-runner gives a call through the client, minus its per-call entries."""
        from ansible_runner.config.runner import RunnerConfig

        private = tempfile.mkdtemp(prefix="jexida-warm-env-")
        try:
            config = RunnerConfig(private_data_dir=private, ident="x", binary=sys.executable, cmdline="",
                                  envvars={**envvars, **self._call_env("")}, suppress_env_files=True, quiet=True)
            config.prepare()
            env = dict(config.env)
        finally:
            shutil.rmtree(private, ignore_errors=True)
        for name in (*PER_CALL_ENV, "JEXIDA_ANSIBLE_FORKSERVER"):
            env.pop(name, None)
        return env

    def _launch(self, envvars: Mapping[str, str], key: dict[str, str]) -> None:
        self._dir = tempfile.mkdtemp(prefix="jexida-warm-")  # 0700: the socket means "run Ansible as me"
        if self._log_path:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self._log_path, "wb") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            # stdin is a pipe nobody writes to: when the bridge dies, however it dies, the server
            # reads EOF and exits. Its own process, never a fork of the bridge (which has threads).
            self._proc = subprocess.Popen(
                [sys.executable, str(SERVER), os.path.join(self._dir, "s"), str(self.real)],
                env=self._server_env(envvars), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log,
                cwd=self._dir, start_new_session=True,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        self._key = key
        self._started_at = time.monotonic()

    def _stop(self) -> None:
        proc, folder = self._proc, self._dir
        self._proc, self._dir, self._key = None, None, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()  # SIGTERM: it exits through atexit (Ansible's local tmp folder goes)
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()
        if folder:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Stop the server (calls in flight finish: each has its own supervisor)."""
        with self._lock:
            self._stop()


_shared: WarmAnsible | None = None
_shared_lock = threading.Lock()


def shared(log_path: Path | None = None) -> WarmAnsible:
    """The process-wide warm Ansible (made on first use, started by the first start or call)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = WarmAnsible(log_path)
        return _shared
