"""The process-wide set-up of every ansible-runner call: private data folders, the environment
Ansible gets, the warm Ansible server, and the pty close ansible-runner waits on."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from mcp_bridge import settings
from mcp_bridge.execution_scripts import MAX_EVENT_RES
from mcp_bridge.paths import ANSIBLE_CFG, state_dir

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


def new_private_dir() -> Path:
    """A private data folder of its own for one ansible-runner call (calls never share runner files).

    It gets ansible-runner's settings file: with ``suppress_env_files`` the ``settings=``
    argument is silently dropped (ansible-runner 2.4 reads only env/settings), and its default
    poll interval (pexpect_timeout, 5 s) would make a timeout or a give-up act up to 5 s late.
    """
    _ensure_ansible_on_path()
    root = runner_root()
    rotate_runner_dirs(root)  # here, where every folder is born, so no kind of run escapes the clean-up
    private_dir = root / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    private_dir.mkdir(mode=0o700)
    (private_dir / "env").mkdir(mode=0o700)
    (private_dir / "env" / "settings").write_text(json.dumps({"pexpect_timeout": settings.RUNNER_POLL_S}))
    return private_dir


_cfg_cache: dict[tuple[str, float], str] = {}


def host_key_checking(config: str) -> str:
    """What `ansible` would use: ANSIBLE_HOST_KEY_CHECKING, else the ini's, else Ansible's default (on).

    ansible-runner sets ANSIBLE_HOST_KEY_CHECKING=False whenever it is not set, which silently
    overrides ``host_key_checking = true`` in ansible.cfg and makes ssh accept (and record) any
    unknown host key. So the bridge always sets it, to the value Ansible itself would have used.
    """
    if "ANSIBLE_HOST_KEY_CHECKING" in os.environ:
        return os.environ["ANSIBLE_HOST_KEY_CHECKING"]
    try:
        stamp = (config, os.stat(config).st_mtime)
    except OSError:
        return "True"
    if stamp not in _cfg_cache:
        parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
        try:
            parser.read(config)
            value = parser.get("defaults", "host_key_checking", fallback="True").strip()
        except configparser.Error:
            value = "True"
        _cfg_cache.clear()
        _cfg_cache[stamp] = value
    return _cfg_cache[stamp]


def ansible_envvars() -> dict[str, str]:
    """The environment every run gets: the suite's ansible.cfg (or the person's ANSIBLE_CONFIG).

    Collections (jexida.cluster included) come from the Python path of the venv's `ansible`.
    """
    config = os.environ.get("ANSIBLE_CONFIG") or str(ANSIBLE_CFG)
    return {
        "ANSIBLE_CONFIG": config,
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": host_key_checking(config),
        # ansible-runner drops a result larger than this from its events (default 700 kB): a
        # capped command result (head + tail of both streams, and stdout_lines again) must fit.
        "MAX_EVENT_RES": str(MAX_EVENT_RES),
    }


warm_server: Any = None


def start_warm() -> Any:
    """Start the warm Ansible for this process's calls (the long-running bridge does; a one-shot
    CLI call would pay for a server it never reuses). Off with JEXIDA_WARM_ANSIBLE=0."""
    global warm_server
    if os.environ.get(settings.WARM_ANSIBLE_ENV, "1").strip().lower() in settings.OFF_WORDS:
        return None
    from mcp_bridge import warm

    warm_server = warm.shared(log_path=state_dir() / "warm-ansible.log")
    warm_server.start(ansible_envvars())
    return warm_server


_rotate_lock = threading.Lock()
_runs_since_rotation = 0


def rotate_runner_dirs(root: Path, keep: int = settings.RUNNER_DIRS_KEPT) -> None:
    """Keep the newest ``keep`` per-call folders; checked every few runs (listing costs a few ms)."""
    global _runs_since_rotation
    with _rotate_lock:
        _runs_since_rotation += 1
        if _runs_since_rotation < settings.RUNNER_ROTATE_EVERY:
            return
        _runs_since_rotation = 0
        aged: list[tuple[float, Path]] = []
        for path in root.iterdir():
            try:  # another bridge on this state folder may remove a folder while we list them
                if path.is_dir():
                    aged.append((path.stat().st_mtime, path))
            except FileNotFoundError:
                continue
        aged.sort()
        for _, old in aged[:-keep] if len(aged) > keep else []:
            shutil.rmtree(old, ignore_errors=True)
