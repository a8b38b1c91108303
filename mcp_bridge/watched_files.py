"""Configuration files the bridge reads again whenever they change on disk: the command policy and
the inventory config's light-command list."""

from __future__ import annotations

import threading
from pathlib import Path

from mcp_bridge import settings
from mcp_bridge.errors import BridgeError
from mcp_bridge.policy import CommandPolicy


class PolicySource:
    """The policy file, read on first use and again whenever it changes on disk."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._policy: CommandPolicy | None = None

    def current(self) -> CommandPolicy:
        stamp: tuple[float, int] | None = None
        if self.path is not None:
            try:
                info = self.path.stat()
                stamp = (info.st_mtime, info.st_size)
            except OSError:
                stamp = None  # from_file says what is wrong with a missing file
        with self._lock:
            if self._policy is None or stamp != self._stamp or (stamp is None and self.path is not None):
                self._policy = CommandPolicy.from_file(self.path)
                self._stamp = stamp
            return self._policy


class LightCommands:
    """The light-command list: the inventory config's ``light_commands`` (read again when the file
    changes), else settings.LIGHT_COMMANDS; ``light_commands: []`` turns light routing off.

    It lives in the inventory config because it is about placement among that inventory's nodes
    (it needs a node there on a local connection), like the plugin's load thresholds; the policy
    file only decides whether a command may run at all."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._programs: frozenset[str] = frozenset(settings.LIGHT_COMMANDS)

    def current(self) -> frozenset[str]:
        try:
            info = self.path.stat()
        except OSError:
            return frozenset(settings.LIGHT_COMMANDS)  # the inventory itself reports a missing file
        stamp = (info.st_mtime, info.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._programs = self._read()
                self._stamp = stamp
            return self._programs

    def _read(self) -> frozenset[str]:
        import yaml

        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return frozenset(settings.LIGHT_COMMANDS)  # the inventory reports what is wrong with the file
        value = data.get("light_commands") if isinstance(data, dict) else None
        if value is None:
            return frozenset(settings.LIGHT_COMMANDS)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BridgeError(f"{self.path}: light_commands must be a list of program names ([] turns light "
                              f"routing off), got {value!r}")
        return frozenset(value)
