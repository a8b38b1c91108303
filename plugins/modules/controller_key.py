#!/usr/bin/python
# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""Create the jexida controller's SSH key pair if it is missing."""

from __future__ import annotations

DOCUMENTATION = r"""
module: controller_key
short_description: Create the jexida controller's SSH key pair if it is missing
version_added: "0.2.0"
description:
  - Creates an ed25519 key pair without a passphrase at O(path) (and O(path).pub), the key the
    controller uses to log in to its workers as the worker user. An existing pair is never replaced.
  - C(jexida init) makes the same pair the same way.
options:
  path:
    description: The private key file. Its folder is created with mode 0700 when missing.
    type: path
    required: true
  comment:
    description: The key's comment.
    type: str
    default: jexida-controller
author:
  - jexida-cluster team (!UNKNOWN)
notes:
  - "Runs on the controller (C(delegate_to: localhost)); needs C(ssh-keygen)."
  - Supports check mode.
"""

EXAMPLES = r"""
- name: Create the controller key pair
  jexida.cluster.controller_key:
    path: "{{ lookup('jexida.cluster.paths', 'controller_key') }}"
  delegate_to: localhost
"""

RETURN = r"""
public_key:
  description: The public key line (empty in check mode when the pair does not exist yet).
  returned: always
  type: str
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.jexida.cluster.plugins.module_utils.controller_key import ensure_key_pair  # noqa: E402
from ansible_collections.jexida.cluster.plugins.module_utils.errors import JexidaError  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True},
                       "comment": {"type": "str", "default": "jexida-controller"}},
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        changed = ensure_key_pair(path, module.params["comment"], dry_run=module.check_mode)
    except JexidaError as exc:
        module.fail_json(msg=str(exc))
    public = ""
    if os.path.exists(path + ".pub"):
        with open(path + ".pub", encoding="utf-8") as handle:
            public = handle.read().strip()
    module.exit_json(changed=changed, public_key=public)


if __name__ == "__main__":
    main()
