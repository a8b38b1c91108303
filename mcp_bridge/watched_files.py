"""Configuration files the bridge reads again whenever they change on disk: the command policy and
the inventory config's light-command list."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from ansible.config.manager import ensure_type
from ansible.errors import AnsibleError

from mcp_bridge import settings
from mcp_bridge.errors import BridgeError
from mcp_bridge.policy import CommandPolicy

T = TypeVar("T")


class WatchedFile(Generic[T]):
    """What ``load`` makes of a file: made on first use and again whenever the file changes
    (modification time or size). A missing file is loaded again on every use, so ``load`` can say
    what is wrong with it each time, or fall back to a default."""

    def __init__(self, path: Path | None, load: Callable[[], T]) -> None:
        self.path = path
        self._load = load
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._value: T | None = None
        self._loaded = False

    def current(self) -> T:
        stamp: tuple[float, int] | None = None
        if self.path is not None:
            try:
                info = self.path.stat()
                stamp = (info.st_mtime, info.st_size)
            except OSError:
                stamp = None
        with self._lock:
            if not self._loaded or stamp != self._stamp or (stamp is None and self.path is not None):
                self._value = self._load()
                self._stamp, self._loaded = stamp, True
            return self._value  # type: ignore[return-value]


def policy_source(path: Path | None) -> WatchedFile[CommandPolicy]:
    """The policy file (None: the built-in policy); CommandPolicy.from_file says what is wrong with it."""
    return WatchedFile(path, lambda: CommandPolicy.from_file(path))


def light_commands(inventory: str) -> WatchedFile[frozenset[str]]:
    """The light-command list: the inventory config's ``light_commands``, else settings.LIGHT_COMMANDS;
    ``light_commands: []`` turns light routing off.

    It lives in the inventory config because it is about placement among that inventory's nodes
    (it needs a node there on a local connection), like the plugin's load thresholds; the policy
    file only decides whether a command may run at all."""
    path = Path(inventory)
    return WatchedFile(path, lambda: _light_programs(path))


def _light_programs(path: Path) -> frozenset[str]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return frozenset(settings.LIGHT_COMMANDS)  # the inventory itself reports what is wrong with the file
    value: Any = data.get("light_commands") if isinstance(data, dict) else None
    if value is None:
        return frozenset(settings.LIGHT_COMMANDS)
    # Read as the plugin's option is (type list, elements str): "ls, cat" is a list too.
    try:
        return frozenset(str(ensure_type(item, "str")) for item in ensure_type(value, "list"))
    except (AnsibleError, TypeError, ValueError) as exc:
        raise BridgeError(f"{path}: light_commands must be a list of program names ([] turns light routing "
                          f"off), got {value!r}") from exc
