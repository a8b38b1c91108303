# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""The jexida.cluster.jump_args filter: the ssh option that reaches a node through a bastion.

The same composition the jexida inventory plugin applies to nodes with ``via`` (plugin_utils/jump.py),
for playbooks: the bootstrap playbook verifies a node behind a bastion on exactly the path the
inventory will use afterwards. Documented in jump_args.yml.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.jexida.cluster.plugins.module_utils.node_spec import RegistryError, normalize_node
from ansible_collections.jexida.cluster.plugins.plugin_utils.jump import ViaError, jump_args
from ansible_collections.jexida.cluster.plugins.plugin_utils.probe import ansible_ssh_defaults


def jump_args_filter(bastion: Mapping[str, Any]) -> str:
    """``-o 'ProxyCommand=ssh ... -W %h:%p <bastion>'`` for a bastion given as a registry node."""
    try:
        node = normalize_node(bastion, "jexida.cluster.jump_args: the bastion")
        return jump_args(node, ansible_ssh_defaults())
    except (RegistryError, ViaError) as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """jexida.cluster filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"jump_args": jump_args_filter}
