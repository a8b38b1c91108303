#!/usr/bin/python
# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""Add, update or remove a node in the jexida node registry."""

# Ansible's layout puts DOCUMENTATION/EXAMPLES/RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_registry
short_description: Add, update or remove a node in the jexida node registry
version_added: "0.1.0"
description:
  - Keeps one entry of the node registry, the YAML file (C(nodes:) list) that the
    P(jexida.cluster.jexida#inventory) inventory plugin lists.
  - "Runs where the registry lives, normally the controller: call it with C(delegate_to: localhost)."
  - An update changes only the options given; options left out keep their stored value
    (or take their default when the node is new).
  - Concurrent runs (one per host of a play) never lose each other's changes. Every change
    re-reads the file under an exclusive lock on C(<path>.lock) and replaces it atomically.
  - The file is rewritten with the registry's header comment; other comments are not kept.
author:
  - jexida-cluster team (!UNKNOWN)
requirements:
  - PyYAML on the host that runs the module
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  path:
    description:
      - The registry file. Its folder is created when missing.
    type: path
    required: true
  name:
    description:
      - The node's name, its inventory host name. Unique in the registry.
    type: str
    required: true
  host:
    description:
      - The address or DNS/mDNS name to reach the node at. Defaults to O(name) for a new node.
    type: str
  port:
    description:
      - The SSH port, 1 to 65535. Defaults to V(22) for a new node.
    type: int
  user:
    description:
      - The user Ansible logs in as. Defaults to V(jexida) for a new node.
    type: str
  tags:
    description:
      - Tags; each becomes a C(tag_<tag>) group. Defaults to V([]) for a new node.
    type: list
    elements: str
  active:
    description:
      - V(false) keeps the node listed (group C(inactive)) but never probed or picked.
      - Defaults to V(true) for a new node.
    type: bool
  vars:
    description:
      - Extra host variables for the node, for example C(ansible_ssh_common_args).
      - May not set C(ansible_host), C(ansible_port) or C(ansible_user); use O(host), O(port) and O(user).
    type: dict
  fallback_hosts:
    description:
      - Addresses tried in order when O(host) does not resolve or answer. Defaults to V([]) for a new node.
    type: list
    elements: str
  via:
    description:
      - The name of the node (a bastion) this node is reached through; the inventory plugin turns it into
        an C(ssh -W) ProxyCommand built from the bastion's own connection settings.
      - The bastion must be another node of the inventory, itself reached directly (no chains).
      - An empty string removes it. Left out, the stored value stays (none for a new node).
    type: str
  execution_node:
    description:
      - The name of the node (an execution node, made with C(jexida_worker_execution_node=true)) that runs
        this node's commands with C(ansible-runner worker); the bridge streams them through it.
      - Another node of the inventory, reached directly; not together with O(via).
      - An empty string removes it. Left out, the stored value stays (none for a new node).
    type: str
  state:
    description:
      - V(present) adds or updates the node, V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Register the worker in the controller's node registry
  jexida.cluster.node_registry:
    path: "{{ playbook_dir }}/../inventory/nodes.yml"
    name: "{{ inventory_hostname }}"
    host: "{{ ansible_host }}"
    port: "{{ ansible_port | default(22) }}"
    tags: [build, gpu]
    fallback_hosts: [192.0.2.7]
  delegate_to: localhost

- name: Register a worker that only the node bastion1 can reach
  jexida.cluster.node_registry:
    path: inventory/nodes.yml
    name: gpu7
    host: 10.20.0.7
    via: bastion1
  delegate_to: localhost

- name: Take a node out of rotation without forgetting it
  jexida.cluster.node_registry:
    path: inventory/nodes.yml
    name: laptop1
    active: false
  delegate_to: localhost

- name: Forget a node
  jexida.cluster.node_registry:
    path: inventory/nodes.yml
    name: old-builder
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
node:
  description:
    - The node as stored after the change, with defaults filled in.
    - For O(state=absent), the node that was removed, or V(null) when there was none.
    - C(via) is there only for a node reached through a bastion.
  returned: always
  type: dict
  sample:
    name: gpu1
    host: gpu1.local
    port: 22
    user: jexida
    tags: [gpu]
    active: true
    vars: {}
    fallback_hosts: [192.0.2.7]
    via: bastion1
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.jexida.cluster.plugins.module_utils.node_spec import NODE_KEYS
from ansible_collections.jexida.cluster.plugins.module_utils.registry import (
    YAML_IMPORT_ERROR,
    RegistryError,
    load_registry,
    remove_node,
    upsert_node,
)


def _stored(path: str, name: str) -> dict[str, Any] | None:
    return next((node for node in load_registry(path) if node["name"] == name), None)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "name": {"type": "str", "required": True},
            "host": {"type": "str"},
            "port": {"type": "int"},
            "user": {"type": "str"},
            "tags": {"type": "list", "elements": "str"},
            "active": {"type": "bool"},
            "vars": {"type": "dict"},
            "fallback_hosts": {"type": "list", "elements": "str"},
            "via": {"type": "str"},
            "execution_node": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        supports_check_mode=True,
    )
    if YAML_IMPORT_ERROR is not None:
        # The registry needs PyYAML on the host that runs the module.
        module.fail_json(msg=missing_required_lib("PyYAML"), exception=YAML_IMPORT_ERROR)

    path: str = module.params["path"]
    name: str = module.params["name"]
    try:
        # `before` is only for --diff; the change itself is decided under the registry's lock.
        before = _stored(path, name)
        if module.params["state"] == "absent":
            changed = remove_node(path, name, dry_run=module.check_mode)
            node = before if changed else None
            after = None
        else:
            wanted = {key: module.params[key] for key in NODE_KEYS}
            changed, node = upsert_node(path, wanted, dry_run=module.check_mode)
            after = node
    except RegistryError as exc:
        module.fail_json(msg=str(exc))

    result: dict[str, Any] = {"changed": changed, "node": node}
    if module._diff:
        result["diff"] = {"before": before or {}, "after": after or {},
                          "before_header": f"{path}: {name}", "after_header": f"{path}: {name}"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
