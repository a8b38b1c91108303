# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""The jexida.cluster.paths lookup: where jexida keeps its files, as the bridge sees it."""

from __future__ import annotations

DOCUMENTATION = r"""
name: paths
version_added: "0.2.0"
short_description: The folders and files jexida uses on the controller
description:
  - Returns the path of each named jexida location, computed exactly as the C(jexida) command
    and the MCP bridge compute it, so playbooks and the bridge never disagree.
  - C(config) is C($JEXIDA_CONFIG_DIR), else C($XDG_CONFIG_HOME/jexida), else C(~/.config/jexida).
  - C(state) is C($JEXIDA_HOME), else C($XDG_STATE_HOME/jexida), else C(~/.local/state/jexida).
options:
  _terms:
    description:
      - Names of locations, any of V(config), V(state), V(inventory) (the inventory config),
        V(registry) (the node registry), V(policy), V(controller_key), V(known_hosts).
    required: true
    type: list
    elements: str
author:
  - jexida-cluster team (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Show where new workers get registered
  ansible.builtin.debug:
    msg: "{{ lookup('jexida.cluster.paths', 'registry') }}"
"""

RETURN = r"""
_raw:
  description: One absolute path per term.
  type: list
  elements: str
"""

from typing import Any  # noqa: E402

from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402
from ansible_collections.jexida.cluster.plugins.plugin_utils.paths import default_paths  # noqa: E402


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
        known = default_paths()
        unknown = [str(term) for term in terms if str(term) not in known]
        if unknown:
            raise AnsibleLookupError(
                f"jexida.cluster.paths: unknown location(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        return [str(known[str(term)]) for term in terms]
