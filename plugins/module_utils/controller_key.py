# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""The controller's SSH key pair: made once (ed25519, no passphrase), never replaced.

Shared by `jexida init` and the jexida.cluster.controller_key module the bootstrap playbook
runs on the controller, so both make the same key the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ansible_collections.jexida.cluster.plugins.module_utils.errors import JexidaError

KEY_COMMENT = "jexida-controller"


def ensure_key_pair(path: str, comment: str = KEY_COMMENT, dry_run: bool = False) -> bool:
    """Create the key pair at ``path`` (and ``path.pub``) unless it exists; True when created."""
    path = os.path.expanduser(path)
    if os.path.exists(path):
        if not os.path.exists(path + ".pub"):
            raise JexidaError(f"{path} exists but {path}.pub does not: restore it, "
                              "or move both away to make a new pair")
        return False
    if dry_run:
        return True
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise JexidaError("ssh-keygen was not found: install the OpenSSH client "
                          "(Debian: apt-get install openssh-client)")
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o700, exist_ok=True)
    proc = subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
                          capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise JexidaError(f"ssh-keygen could not create {path}: {proc.stderr.strip() or proc.returncode}")
    return True
