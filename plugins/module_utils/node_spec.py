# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""What a node of the registry may hold: its fields, their defaults and the checks.

``registry`` reads and writes the file; this module only judges what is in it, so the
inventory plugin, the node_registry module, the ``jump_args`` filter and the MCP bridge
all accept and refuse the same nodes with the same messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.jexida.cluster.plugins.module_utils.errors import JexidaError

NODE_KEYS: tuple[str, ...] = (
    "name", "host", "port", "user", "tags", "active", "vars", "fallback_hosts", "via", "execution_node")
DEFAULT_USER = "jexida"
DEFAULT_PORT = 22

# Set from the node's own fields (host/port/user) or by the inventory plugin: a node's
# `vars` may not set them, so there is one place to look for each.
RESERVED_VARS: dict[str, str] = {
    "ansible_host": "set the node's 'host' field instead",
    "ansible_ssh_host": "set the node's 'host' field instead",
    "ansible_port": "set the node's 'port' field instead",
    "ansible_ssh_port": "set the node's 'port' field instead",
    "ansible_user": "set the node's 'user' field instead",
    "ansible_ssh_user": "set the node's 'user' field instead",
    "jexida_tags": "set the node's 'tags' field instead",
    "jexida_active": "set the node's 'active' field instead",
    "jexida_facts": "it is filled in by the inventory plugin",
    "jexida_via": "set the node's 'via' field instead",
    "jexida_execution_node": "set the node's 'execution_node' field instead",
}

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Host names, IPv4 and IPv6 addresses (optionally [bracketed] or with a %zone). No leading '-':
# the address ends up in an ssh command line, where '-oProxyCommand=...' would be an option.
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:%\[\]][A-Za-z0-9_.:%\[\]-]*$")
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*\$?$")
# Registry strings become host variables that Ansible may template; only `vars` may hold templates.
_TEMPLATE_MARKERS = ("{{", "{%", "{#")


class RegistryError(JexidaError):
    """The registry file or a node in it is invalid; the message names the file, the field and the fix."""


def _type_name(value: Any) -> str:
    # Plain YAML names: the loader may hand us subclasses (tagged str/int) with odd names.
    if value is None:
        return "null"
    for kind, label in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"),
                        (Mapping, "mapping"), (list, "list")):
        if isinstance(value, kind):
            return label
    return type(value).__name__


def _given(raw: Mapping[str, Any], key: str, default: Any) -> Any:
    # A key left out or written empty (`port:`) takes its default.
    value = raw.get(key)
    return default if value is None else value


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value)


def normalize_node(raw: Any, where: str) -> dict[str, Any]:
    """Check one node and fill in defaults; ``where`` prefixes every error ("nodes.yml: node #3 ('gpu1')")."""
    if not isinstance(raw, Mapping):
        raise RegistryError(
            f"{where}: a node must be a mapping with at least 'name', got {_type_name(raw)}; "
            f"write it as '- name: <node name>'"
        )
    unknown = sorted(str(key) for key in raw if key not in NODE_KEYS)
    if unknown:
        raise RegistryError(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
            f"a node has only {', '.join(NODE_KEYS)} (put extra host variables under 'vars')"
        )

    name = raw.get("name")
    if name is None:
        raise RegistryError(f"{where}: 'name' is required; add 'name: <node name>' to the entry")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RegistryError(
            f"{where}: 'name' must be a non-empty string of letters, digits, '_', '-' or '.', "
            f"got {_type_name(name)} {name!r}"
        )

    host = _given(raw, "host", name)
    if not isinstance(host, str) or not _HOST_RE.match(host):
        raise RegistryError(
            f"{where}: 'host' must be a host name or address (letters, digits, '.', '-', ':'; not starting "
            f"with '-'), got {_type_name(host)} {host!r}"
        )

    port = _given(raw, "port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise RegistryError(f"{where}: 'port' must be an integer from 1 to 65535, got {_type_name(port)} {port!r}")

    user = _given(raw, "user", DEFAULT_USER)
    if not isinstance(user, str) or not _USER_RE.match(user):
        raise RegistryError(
            f"{where}: 'user' must be a user name (letters, digits, '_', '.', '-'; starting with a letter "
            f"or '_'), got {_type_name(user)} {user!r}"
        )

    tags = _given(raw, "tags", [])
    if not _is_str_list(tags):
        got = _type_name(tags) if not isinstance(tags, list) else "a list with " + ", ".join(
            sorted({_type_name(t) for t in tags if not isinstance(t, str)}) or ["an empty string"])
        raise RegistryError(
            f"{where}: 'tags' must be a list of strings, got {got}; write it as 'tags: [gpu, fast]'"
        )
    templated = [tag for tag in tags if any(marker in tag for marker in _TEMPLATE_MARKERS)]
    if templated:
        raise RegistryError(f"{where}: 'tags' may not contain templates ({templated[0]!r}): tags are plain names")

    active = _given(raw, "active", True)
    if not isinstance(active, bool):
        raise RegistryError(f"{where}: 'active' must be true or false, got {_type_name(active)} {active!r}")

    host_vars = _given(raw, "vars", {})
    if not isinstance(host_vars, Mapping):
        raise RegistryError(
            f"{where}: 'vars' must be a mapping of host variables, got {_type_name(host_vars)}; "
            f"write it as 'vars: {{ansible_python_interpreter: /usr/bin/python3}}'"
        )
    for key in host_vars:
        if not isinstance(key, str) or not _VAR_RE.match(key):
            raise RegistryError(f"{where}: 'vars' key {key!r} is not a valid variable name")
        if key in RESERVED_VARS:
            raise RegistryError(f"{where}: 'vars' may not set {key}: {RESERVED_VARS[key]}")

    fallbacks = _given(raw, "fallback_hosts", [])
    if not _is_str_list(fallbacks) or not all(_HOST_RE.match(h) for h in fallbacks):
        raise RegistryError(
            f"{where}: 'fallback_hosts' must be a list of host names or addresses, got {_type_name(fallbacks)}; "
            f"write it as 'fallback_hosts: [192.0.2.7]'"
        )

    via = raw.get("via") or None  # "" clears it (an upsert keeps what None leaves out)
    if via is not None and (not isinstance(via, str) or not _NAME_RE.match(via)):
        raise RegistryError(f"{where}: 'via' must be the name of another node (the bastion this node is reached "
                            f"through), got {_type_name(via)} {via!r}")
    if via == name:
        raise RegistryError(f"{where}: 'via' names the node itself; a node cannot be its own bastion: "
                            f"remove 'via' or name the node it is reached through")
    execution_node = raw.get("execution_node") or None
    if execution_node is not None and (not isinstance(execution_node, str) or not _NAME_RE.match(execution_node)
                                       or execution_node == name):
        raise RegistryError(f"{where}: 'execution_node' must be the name of another node (the one that runs this "
                            f"node's commands), got {_type_name(execution_node)} {execution_node!r}")
    if execution_node and via:
        raise RegistryError(f"{where}: 'via' and 'execution_node' both say how the node is reached; use one of them "
                            f"(an execution node reaches its workers itself)")

    # Keep the loader's own string objects (they may carry Ansible's trust tags).
    return {
        "name": name,
        "host": host,
        "port": int(port),
        "user": user,
        "tags": list(dict.fromkeys(tags)),
        "active": active,
        "vars": dict(host_vars),
        "fallback_hosts": list(fallbacks),
        **({"via": via} if via else {}),  # only when set: nodes without a bastion keep their old shape
        **({"execution_node": execution_node} if execution_node else {}),
    }


def node_where(source: str, index: int, raw: Any) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    label = f" ({name!r})" if isinstance(name, str) else ""
    return f"{source}: node #{index}{label}"


def check_via(sources: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], *, complete: bool = True) -> None:
    """Check every node's ``via`` against the others: (source, nodes) pairs, numbered per source.

    ``complete``: the sources hold every node (the inventory plugin's merged view), so a
    ``via`` naming no node is an error. A registry file alone may name a bastion written
    inline in the inventory config, so its own checks are only about chains.
    """
    by_name = {node["name"]: node for _source, nodes in sources for node in nodes}
    for source, nodes in sources:
        for index, node in enumerate(nodes, start=1):
            runner = node.get("execution_node")
            if runner:
                # One level, like a bastion: the execution node is reached from the controller itself.
                other = by_name.get(runner)
                if other is None and complete:
                    raise RegistryError(f"{node_where(source, index, node)}: 'execution_node' names {runner!r}, which "
                                        f"is not a node of this inventory (nodes: {', '.join(sorted(by_name))})")
                if other is not None and (other.get("execution_node") or other.get("via")):
                    raise RegistryError(f"{node_where(source, index, node)}: 'execution_node' names {runner!r}, which "
                                        f"is itself reached through another node; an execution node must be reached "
                                        f"directly from the controller")
            via = node.get("via")
            if not via:
                continue
            bastion = by_name.get(via)
            if bastion is None and complete:
                raise RegistryError(f"{node_where(source, index, node)}: 'via' names {via!r}, which is not a node of "
                                    f"this inventory (nodes: {', '.join(sorted(by_name))}); add the bastion as a "
                                    f"node, or fix the name")
            if bastion is not None and bastion.get("via"):
                # One level only: a nested ProxyCommand would need its own quoting and %-escaping per
                # level, and a failure could not be pinned on one hop.
                raise RegistryError(f"{node_where(source, index, node)}: 'via' names {via!r}, which is itself reached "
                                    f"via {bastion['via']!r}; chains of bastions are not supported: make {via!r} "
                                    f"reachable directly, or reach this node through {bastion['via']!r}")


def validate_nodes(raw_list: Any, source: str) -> list[dict[str, Any]]:
    """Check a list of raw nodes (numbered from 1 in messages); names must be unique."""
    if raw_list is None:
        return []
    if not isinstance(raw_list, list):
        raise RegistryError(
            f"{source}: 'nodes' must be a list of nodes, got {_type_name(raw_list)}; "
            f"write it as 'nodes:' followed by '- name: ...' entries"
        )
    nodes: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_list, start=1):
        node = normalize_node(raw, node_where(source, index, raw))
        if node["name"] in seen:
            raise RegistryError(
                f"{node_where(source, index, raw)}: duplicate name, node #{seen[node['name']]} has it too; "
                f"names must be unique: rename or remove one of them"
            )
        seen[node["name"]] = index
        nodes.append(node)
    check_via([(source, nodes)], complete=False)
    return nodes


def validate_document(document: Any, source: str) -> list[dict[str, Any]]:
    """Check a parsed registry file (a mapping with a 'nodes' list; empty means no nodes)."""
    if document is None:
        return []
    if not isinstance(document, Mapping):
        raise RegistryError(
            f"{source}: a node registry must be a mapping with a 'nodes' list, got {_type_name(document)}"
        )
    unknown = sorted(str(key) for key in document if key != "nodes")
    if unknown:
        raise RegistryError(
            f"{source}: unknown top-level key(s) {', '.join(repr(k) for k in unknown)}; only 'nodes' is allowed"
        )
    return validate_nodes(document.get("nodes"), source)
