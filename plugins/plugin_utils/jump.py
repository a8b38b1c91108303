# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""Nodes behind a bastion (registry field ``via``): the ssh options that make the hop.

A node with ``via: <bastion>`` gets ``-o ProxyCommand=ssh ... -W %h:%p <bastion>`` appended
to its ``ansible_ssh_common_args``. Everything that reaches nodes through Ansible's ssh
connection (``ansible``, the bridge's ansible-runner runs, jobs, cancel, the bootstrap
playbook) and the inventory probe (which builds its ssh command from the same variables)
then goes through the bastion, with no code of its own.

Why a ProxyCommand and not ``ProxyJump``: ssh starts a ProxyJump hop as a second ssh that
sees only ssh_config files, none of the ``-o`` options of the command line. The bastion's
connection settings (the controller key, the suite's known_hosts with strict checking,
BatchMode) are exactly such options, so a ProxyJump hop would offer the wrong key and check
the bastion against ``~/.ssh/known_hosts``. A ProxyCommand carries them explicitly, taken
from the bastion's own node entry the way Ansible would connect to the bastion itself.

Pure functions (no I/O): the inventory plugin and the bootstrap playbook's filter use them.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ansible_collections.jexida.cluster.plugins.plugin_utils.probe import ProbeTarget, control_path, target_for_node

# Options that already route the connection somewhere: with one of them, `via` would be ignored
# (ssh keeps the first value) or fight it, so the two are never combined.
_ROUTING_OPTIONS = ("ProxyCommand", "ProxyJump")


class ViaError(ValueError):
    """A ``via`` that cannot be turned into a hop; the message says which setting and why."""


def _option(name: str, value: str) -> str:
    # ssh reads an -o value like a config line: quote it only when it holds a space or a quote.
    return f"{name}={value}" if re.fullmatch(r"[\w@%+=:,./~-]+", value) else f'{name}="{value}"'


def _escape(arg: str) -> str:
    # ssh runs a ProxyCommand with the shell after expanding its %-tokens: shell-quote each
    # word, then double every '%' so it reaches the inner ssh as written (which expands its own).
    return shlex.quote(arg).replace("%", "%%")


def proxy_command(bastion: ProbeTarget) -> str:
    """The ProxyCommand (a shell command line) that opens a stdio channel to ``%h:%p`` through ``bastion``.

    It logs in to the bastion as Ansible would (user, port, key, the bastion's own
    ``ansible_ssh_common_args``/``ansible_ssh_extra_args``: its known_hosts and host key
    checking). It reuses the bastion's ControlPersist master when one is up (Ansible's
    ControlPath for the bastion, ``ControlMaster=no``: use, never create), else connects on
    its own. ssh_args (session multiplexing settings) are left out: the hop lives inside the
    worker connection's own ControlPersist master, which is what keeps it warm.
    """
    host = bastion.addresses[0]
    argv = [bastion.ssh_executable, "-o", "BatchMode=yes"]
    if not bastion.host_key_checking:
        argv += ["-o", "StrictHostKeyChecking=no"]
    argv += ["-o", f"Port={bastion.port}"]
    if bastion.private_key_file:
        argv += ["-o", _option("IdentityFile", os.path.expanduser(bastion.private_key_file))]
    argv += ["-o", "KbdInteractiveAuthentication=no", "-o", "PasswordAuthentication=no"]
    if bastion.user:
        argv += ["-o", _option("User", bastion.user)]
    argv += [*bastion.common_args, *bastion.extra_args]
    given = " ".join(argv).lower()
    if "controlpath" not in given:
        path = control_path(host, bastion.port, bastion.user, bastion.control_path_dir, bastion.control_path_template)
        argv += ["-o", _option("ControlPath", path)]
    if "controlmaster" not in given:
        argv += ["-o", "ControlMaster=no"]
    return " ".join(_escape(arg) for arg in argv) + " -W %h:%p " + _escape(host)


def _raw_args(host_vars: Mapping[str, Any], defaults: Mapping[str, Any], var: str, option: str) -> str:
    value = host_vars.get(var)
    if value in (None, ""):
        value = defaults.get(option)
    return str(value or "").strip()


def jump_args(bastion: Mapping[str, Any], ssh_defaults: Mapping[str, Any] | None = None) -> str:
    """The ssh option (``-o 'ProxyCommand=...'``) that reaches a node through ``bastion`` (a registry node)."""
    jump = target_for_node(bastion, ssh_defaults or {})
    if jump.local or jump.unsupported:
        connection = "local" if jump.local else jump.unsupported
        raise ViaError(
            f"'via' names {bastion['name']!r}, which uses ansible_connection={connection}: a bastion is a node "
            f"reached over SSH" + ("; a node the controller itself reaches needs no 'via'" if jump.local else "")
        )
    return "-o " + shlex.quote("ProxyCommand=" + proxy_command(jump))


def via_connection_vars(node: Mapping[str, Any], bastion: Mapping[str, Any],
                        ssh_defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The host vars of ``node`` (a registry node, vars rendered) reached through ``bastion`` (another one).

    ``ansible_ssh_common_args`` becomes the node's own (or, without one, Ansible's configured
    ``ssh_common_args``, which the host var would otherwise hide) followed by the hop.
    Raises ViaError when the pair cannot work.
    """
    defaults = ssh_defaults or {}
    host_vars = dict(node.get("vars") or {})
    target = target_for_node(node, defaults)
    if target.local or target.unsupported:
        connection = "local" if target.local else target.unsupported
        raise ViaError(f"'via' needs a node reached over SSH, but its vars set ansible_connection={connection}")
    hop = jump_args(bastion, defaults)
    common = _raw_args(host_vars, defaults, "ansible_ssh_common_args", "ssh_common_args")
    others = " ".join((common, _raw_args(host_vars, defaults, "ansible_ssh_extra_args", "ssh_extra_args"),
                       _raw_args(host_vars, defaults, "ansible_ssh_args", "ssh_args"))).lower()
    clash = [option for option in _ROUTING_OPTIONS if option.lower() in others]
    clash += ["-J"] if " -j " in f" {others} " else []
    if clash:
        raise ViaError(
            f"'via' and a {clash[0]} in the node's ssh args both route the connection; use one of them "
            f"(remove 'via', or the {clash[0]} option)"
        )
    host_vars["ansible_ssh_common_args"] = f"{common} {hop}" if common else hop
    return host_vars


def group_execution_nodes(nodes: Sequence[dict[str, Any]], by_tag: Mapping[str, Any], source: str) -> None:
    """Give each node tagged like a key of ``by_tag`` that execution node, in place (the inventory config's
    ``execution_nodes``); a node's own ``execution_node`` or ``via`` wins, and an execution node keeps none."""
    for tag, runner in by_tag.items():
        if not isinstance(runner, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", runner):
            raise ViaError(f"{source}: execution_nodes: {tag!r} must map to a node name, got {runner!r}")
        for node in nodes:
            if (tag in node["tags"] and node["name"] != runner and not node.get("via")
                    and not node.get("execution_node")):
                node["execution_node"] = runner


def probe_through(target: ProbeTarget, runner: ProbeTarget) -> ProbeTarget:
    """The probe target of a node behind an execution node: the same probe, with the execution node as a hop.

    Only the probe takes this path (one ssh round trip, no ansible-runner in the inventory
    plugin); commands and jobs run ON the execution node (mcp_bridge/exec_node.py). So the
    execution node must allow jumps to its workers' sshd (jexida_worker_allow_jump).
    """
    hop = ("-o", "ProxyCommand=" + proxy_command(runner))
    return replace(target, common_args=(*target.common_args, *hop), jump=runner)


Render = Callable[[Mapping[str, Any]], dict[str, Any]]


def apply_via(nodes: list[dict[str, Any]], render: Render, ssh_defaults: Mapping[str, Any],
              where: Mapping[str, str]) -> None:
    """Give every node with ``via`` its hop, in place (``ansible_ssh_common_args`` in its vars).

    ``render`` renders a node's templated connection vars; ``where`` names each node's entry
    for errors ("nodes.yml: node #3 ('gpu1')"). Checked by node_spec.check_via before: every
    bastion exists and is reached directly.
    """
    by_name = {node["name"]: node for node in nodes}
    for node in nodes:
        runner = node.get("execution_node")
        if runner:
            target = target_for_node(render(by_name[runner]), ssh_defaults)
            if target.local or target.unsupported:
                raise ViaError(f"{where.get(node['name'], node['name'])}: 'execution_node' names {runner!r}, which "
                               f"uses ansible_connection={'local' if target.local else target.unsupported}: an "
                               f"execution node is a node reached over SSH")
        if node.get("via"):
            try:
                composed = via_connection_vars(render(node), render(by_name[node["via"]]), ssh_defaults)
            except ViaError as exc:
                raise ViaError(f"{where.get(node['name'], node['name'])}: {exc}") from exc
            node["vars"] = {**node["vars"], "ansible_ssh_common_args": composed["ansible_ssh_common_args"]}


def probe_targets(nodes: list[dict[str, Any]], render: Render,
                  ssh_defaults: Mapping[str, Any]) -> dict[str, ProbeTarget]:
    """The probe target of every active node; a node behind a bastion carries the bastion's as ``jump``."""
    by_name = {node["name"]: node for node in nodes}
    targets: dict[str, ProbeTarget] = {}
    for node in nodes:
        if node["active"]:
            target = target_for_node(render(node), ssh_defaults)
            if node.get("via"):  # the hop is in the node's ssh args already; the bastion's target explains failures
                target = replace(target, jump=target_for_node(render(by_name[node["via"]]), ssh_defaults))
            elif node.get("execution_node"):
                target = probe_through(target, target_for_node(render(by_name[node["execution_node"]]), ssh_defaults))
            targets[node["name"]] = target
    return targets
