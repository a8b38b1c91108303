"""The lab's node image: Debian 12 minbase via debootstrap, imported into podman once per recipe."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from jexida_lab.podman import LabError, podman, podman_env

IMAGE_NAME = "localhost/jexida-node"

# What a fresh Debian 12 cloud server has. pip/venv and nftables are in the image so the
# lab needs no network of its own; the role still declares and checks them.
IMAGE_PACKAGES: tuple[str, ...] = (
    "python3",
    "python3-apt",
    "python3-venv",
    "python3-pip",
    "openssh-server",
    "sudo",
    "adduser",
    "procps",
    "nftables",
    "logrotate",
)
IMAGE_SUITE = "bookworm"
# Bump when the recipe below changes: the tag is derived from it, so a stale image is rebuilt.
IMAGE_RECIPE_VERSION = "4"

# Each node's start: its host keys, root's key from the lab, then sshd. sshd runs as a daemon
# (so the role can reload it like on a real server) and the container's main process is
# `sleep infinity`, which obeys SIGTERM under --init.
_NODE_SETUP = r"""
set -e
test -f /etc/ssh/ssh_host_ed25519_key || ssh-keygen -A >/dev/null
mkdir -p /run/sshd /root/.ssh
chmod 700 /root/.ssh
printf '%s\n' "$JEXIDA_ADMIN_KEY" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
"""
NODE_START_SCRIPT = _NODE_SETUP + "/usr/sbin/sshd\nexec sleep infinity\n"
# The same node with sshd as the container's main process: a restart of sshd would end the
# container (the role must reload, not restart). Not part of the image recipe: it is the run command.
NODE_START_SCRIPT_FOREGROUND = _NODE_SETUP + "exec /usr/sbin/sshd -D -e\n"

SSHD_FRESH_SERVER_CONFIG = """\
# Like a new cloud server: root by key only, no passwords.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""


def image_ref() -> str:
    recipe = "|".join([IMAGE_SUITE, IMAGE_RECIPE_VERSION, *IMAGE_PACKAGES, NODE_START_SCRIPT])
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:10]
    return f"{IMAGE_NAME}:{IMAGE_SUITE}-{digest}"


def image_exists(ref: str) -> bool:
    proc = subprocess.run(
        ["podman", "image", "exists", ref], env=podman_env(), capture_output=True, check=False
    )
    return proc.returncode == 0


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (the only package source it reaches)."""
    configured = os.environ.get("JEXIDA_DEBIAN_MIRROR")
    if configured:
        return configured
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in candidates:
        if not source.is_file():
            continue
        text = source.read_text(errors="replace")
        for match in re.finditer(r"^URIs:\s*(\S+)", text, re.MULTILINE):
            if "security" not in match.group(1):
                return match.group(1)
        for match in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.MULTILINE):
            if "security" not in match.group(1):
                return match.group(1)
    return "http://deb.debian.org/debian"


def ensure_image(log: bool = True) -> str:
    """Build the node image once (debootstrap + podman import); reuse it while the tag exists."""
    ref = image_ref()
    if image_exists(ref):
        return ref
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is not installed: run `make setup`")
    if log:
        print(f"lab: building node image {ref} (debootstrap, about a minute, once)", flush=True)
    build_root = Path(tempfile.mkdtemp(prefix="jexida-image-", dir="/var/tmp"))
    rootfs = build_root / "rootfs"
    try:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(IMAGE_PACKAGES)}",
                IMAGE_SUITE,
                str(rootfs),
                debian_mirror(),
            ],
            check=True,
            capture_output=True,
        )
        # Host keys made by the package are shared by every container: each node makes its own.
        for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
            key.unlink()
        (rootfs / "etc" / "ssh" / "sshd_config.d" / "00-fresh-server.conf").write_text(
            SSHD_FRESH_SERVER_CONFIG
        )
        # sshd restarted from inside an SSH session (as the role's handler does) inherits that
        # session's loginuid; a container may not change it (no CAP_AUDIT_CONTROL), so a required
        # pam_loginuid would end every non-root login with exit 254. Real servers restart sshd
        # from systemd and never hit this.
        pam_sshd = rootfs / "etc" / "pam.d" / "sshd"
        pam_sshd.write_text(
            re.sub(r"^session\s+required\s+pam_loginuid\.so", "session optional pam_loginuid.so",
                   pam_sshd.read_text(), flags=re.MULTILINE)
        )
        shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        imported = subprocess.run(
            ["podman", "import", "--change", "CMD /bin/bash", "-", ref],
            stdin=tar.stdout,
            env=podman_env(),
            capture_output=True,
            check=False,
        )
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0:
            raise LabError(f"podman import failed: {imported.stderr.decode(errors='replace')}")
    except subprocess.CalledProcessError as exc:
        stderr = (exc.stderr or b"").decode(errors="replace")[-2000:]
        raise LabError(f"building the node image failed: {stderr}") from exc
    finally:
        shutil.rmtree(build_root, ignore_errors=True)
    _remove_stale_images(keep=ref)
    return ref


def _remove_stale_images(keep: str) -> None:
    """Drop node images of older recipes (podman refuses while a container still uses one)."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_NAME, check=False)
    for ref in listed.split():
        if ref != keep and ref.startswith(IMAGE_NAME + ":"):
            podman("rmi", ref, check=False)
