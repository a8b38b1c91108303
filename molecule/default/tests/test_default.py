"""What the role with its defaults leaves on a fresh node (testinfra, over podman exec)."""

from __future__ import annotations

from pathlib import Path

CONTROLLER_KEY = (Path(__file__).parent.parent / "files" / "controller_ed25519.pub").read_text().strip()


def test_worker_user_has_no_password_and_a_real_shell(host):
    user = host.user("jexida")
    assert user.exists
    assert user.shell == "/bin/bash"
    assert user.home == "/home/jexida"
    assert user.group == "jexida"
    shadow = host.check_output("getent shadow jexida").split(":")
    assert shadow[1].startswith("!"), "the account must have no usable password"


def test_ssh_folder_and_key_modes(host):
    ssh_dir = host.file("/home/jexida/.ssh")
    assert ssh_dir.is_directory and ssh_dir.mode == 0o700 and ssh_dir.user == "jexida"
    keys = host.file("/home/jexida/.ssh/authorized_keys")
    assert keys.mode == 0o600 and keys.user == "jexida" and keys.group == "jexida"
    lines = [line for line in keys.content_string.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1
    assert lines[0].endswith(CONTROLLER_KEY)
    assert "no-port-forwarding" in lines[0] and "from=" not in lines[0]


def test_job_and_log_dirs(host):
    for path in ("/opt/jexida-jobs", "/var/log/jexida-jobs"):
        folder = host.file(path)
        assert folder.is_directory
        assert (folder.user, folder.group, folder.mode) == ("jexida", "jexida", 0o750)


def test_python3_and_packages(host):
    assert host.run("python3 --version").rc == 0
    for package in ("python3", "python3-venv", "python3-pip"):
        assert host.package(package).is_installed
    assert host.run("runuser -u jexida -- python3 -m venv /tmp/venv-check").rc == 0


def test_no_sudo_by_default(host):
    assert not host.file("/etc/sudoers.d/jexida-worker").exists
    assert host.run("sudo -l -U jexida").stdout.find("NOPASSWD") == -1


def test_sshd_dropin_is_accepted_and_scoped_to_the_worker(host):
    dropin = host.file("/etc/ssh/sshd_config.d/50-jexida-worker.conf")
    assert dropin.exists and dropin.mode == 0o644
    assert "Ansible managed" in dropin.content_string
    assert host.run("/usr/sbin/sshd -t").rc == 0
    worker = host.check_output("/usr/sbin/sshd -T -C user=jexida,host=controller,addr=127.0.0.1")
    assert "allowtcpforwarding no" in worker and "passwordauthentication no" in worker
    assert "allowagentforwarding no" in worker and "x11forwarding no" in worker
    # The Match block does not leak onto other accounts.
    root = host.check_output("/usr/sbin/sshd -T -C user=root,host=controller,addr=127.0.0.1")
    assert "allowtcpforwarding yes" in root


def test_sshd_is_running_after_the_restart(host):
    assert host.run("pgrep -x sshd").rc == 0


def test_retention_rule(host):
    rule = host.file("/etc/tmpfiles.d/jexida-worker.conf").content_string
    assert "d /opt/jexida-jobs 0750 jexida jexida 14d" in rule
    assert "d /var/log/jexida-jobs 0750 jexida jexida 30d" in rule


def test_no_firewall_by_default(host):
    assert not host.file("/etc/nftables.d/jexida-worker.nft").exists
