# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""The node registry: the YAML file that lists the worker nodes.

Shared by the ``jexida.cluster.jexida`` inventory plugin (which only reads it), the
``jexida.cluster.node_registry`` module and the MCP bridge (which write it). The file is::

    ---
    nodes:
      - name: gpu1            # required, unique
        host: gpu1.local      # default: the name
        port: 22              # default 22
        user: jexida          # default "jexida"
        tags: [gpu]           # default []
        active: true          # default true
        vars: {}              # extra host vars, default {}
        fallback_hosts: []    # tried in order when host does not answer, default []
        via: bastion1         # another node (reached directly) this one is reached through, default none
        execution_node: exec1 # another node that runs this one's commands (ansible-runner worker), default none

Writers never lose each other's updates: every change re-reads the file under an
exclusive ``flock`` on ``<path>.lock`` and replaces the file atomically.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import traceback
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import Any

from ansible_collections.jexida.cluster.plugins.module_utils.node_spec import (
    NODE_KEYS,
    RegistryError,
    check_via,
    normalize_node,
    validate_document,
)

try:
    import yaml
except ImportError:
    # PyYAML is not part of Python, and the host that runs the node_registry module may lack it:
    # the module reports this with missing_required_lib(). Reading or writing a registry needs it.
    yaml = None
    YAML_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    YAML_IMPORT_ERROR = None

HEADER = (
    "# jexida node registry: the worker nodes the jexida.cluster.jexida inventory lists.\n"
    "# Written by jexida.cluster.node_registry and the jexida bridge (atomic, locked).\n"
    "# Hand edits are fine; comments other than this header are not kept.\n"
)


def _read(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read the node registry: {exc.strerror}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: malformed YAML: {' '.join(str(exc).split())}; fix the file's syntax") from exc
    return validate_document(document, path)


def load_registry(path: str) -> list[dict[str, Any]]:
    """The nodes in the registry at ``path``, checked and with defaults; a missing or empty file has none."""
    return _read(os.fspath(path))


if yaml is not None:
    class _IndentedDumper(yaml.SafeDumper):
        # Indent list items under their key, as yamllint's default config wants.
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            super().increase_indent(flow, False)


def dump_registry(nodes: list[dict[str, Any]]) -> str:
    """The registry file's text for ``nodes`` (header, document start, one entry per node)."""
    plain = [{key: node[key] for key in NODE_KEYS if key in node} for node in nodes]
    body = yaml.dump({"nodes": plain}, Dumper=_IndentedDumper, sort_keys=False,
                     default_flow_style=False, allow_unicode=True)
    return HEADER + "---\n" + body


@contextmanager
def _locked(path: str) -> Iterator[None]:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    # A separate lock file: the registry itself is replaced on every write, so a lock
    # on it would be held on an unlinked inode.
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _guard(path: str, dry_run: bool) -> AbstractContextManager[None]:
    # Check mode only reads: it must not create folders or lock files.
    return nullcontext() if dry_run else _locked(path)


def _atomic_write(path: str, text: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename itself must reach the disk too.
    dir_fd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def upsert_node(path: str, node: Mapping[str, Any], *, dry_run: bool = False) -> tuple[bool, dict[str, Any]]:
    """Add the node, or update the one with its name; return (changed, the node as stored).

    Keys of ``node`` that are missing (or None) keep the stored value, or take the default
    for a new node. With ``dry_run`` nothing is written (check mode).
    """
    path = os.fspath(path)
    name = node.get("name")
    given = {key: value for key, value in node.items() if value is not None}
    with _guard(path, dry_run):
        nodes = _read(path)
        index = next((i for i, current in enumerate(nodes) if current["name"] == name), None)
        merged = {**(nodes[index] if index is not None else {}), **given}
        where = f"{path}: node {name!r}" if isinstance(name, str) else f"{path}: new node"
        updated = normalize_node(merged, where)
        if index is not None and nodes[index] == updated:
            return False, updated
        if index is None:
            nodes.append(updated)
        else:
            nodes[index] = updated
        check_via([(path, nodes)], complete=False)
        if not dry_run:
            _atomic_write(path, dump_registry(nodes))
        return True, updated


def remove_node(path: str, name: str, *, dry_run: bool = False) -> bool:
    """Remove the node called ``name``; True when it was there."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return False  # nothing to remove, and no reason to create folders or a lock file
    with _guard(path, dry_run):
        nodes = _read(path)
        kept = [node for node in nodes if node["name"] != name]
        if len(kept) == len(nodes):
            return False
        for field, role in (("via", "bastion"), ("execution_node", "execution node")):
            behind = sorted(node["name"] for node in kept if node.get(field) == name)
            if behind:
                raise RegistryError(
                    f"{path}: node {name!r} is the {role} of {', '.join(repr(n) for n in behind)} ('{field}: {name}'); "
                    f"remove those nodes or change their '{field}' first"
                )
        if not dry_run:
            _atomic_write(path, dump_registry(kept))
        return True
