"""podman for the lab, with the project's own settings (runc + explicit ulimits, CONTAINERS_CONF)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from mcp_bridge.errors import JexidaError

CONTAINERS_CONF = Path(__file__).resolve().with_name("containers.conf")


class LabError(JexidaError):
    """A lab operation failed; the message says what and what to do."""



def podman_env() -> dict[str, str]:
    """The environment for podman: the project's CONTAINERS_CONF (runc + ulimits)."""
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def podman(*args: str, check: bool = True, input_bytes: bytes | None = None) -> str:
    if shutil.which("podman") is None:
        raise LabError("podman is not installed: run `make setup` (apt-get install podman runc)")
    proc = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        input=input_bytes,
        capture_output=True,
        check=False,
    )
    if check and proc.returncode != 0:
        raise LabError(
            f"podman {' '.join(args[:2])} failed (rc={proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return proc.stdout.decode(errors="replace")
