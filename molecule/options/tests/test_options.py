"""The role's non-default options (testinfra, over podman exec)."""

from __future__ import annotations


def test_custom_user_and_dirs(host):
    assert host.user("builder").exists
    assert not host.user("jexida").exists
    for path in ("/opt/jexida-jobs", "/var/log/jexida-jobs"):
        assert host.file(path).user == "builder"


def test_key_restricted_to_source_addresses_and_deduplicated(host):
    keys = host.file("/home/builder/.ssh/authorized_keys").content_string
    lines = [line for line in keys.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1
    assert lines[0].startswith('from="192.0.2.10,198.51.100.0/24",')


def test_sudo_scoped_to_the_listed_commands(host):
    sudoers = host.file("/etc/sudoers.d/jexida-worker")
    assert sudoers.mode == 0o440 and sudoers.user == "root"
    assert host.run("visudo -cf /etc/sudoers.d/jexida-worker").rc == 0
    allowed = host.check_output("sudo -l -U builder")
    assert "/usr/bin/systemctl restart myapp" in allowed and "/usr/bin/apt-get update" in allowed
    assert "(ALL : ALL) NOPASSWD: ALL" not in allowed
    # A command outside the list is refused without a password prompt.
    denied = host.run("runuser -u builder -- sudo -n /usr/bin/id")
    assert denied.rc != 0


def test_retention_zero_keeps_job_folders(host):
    rule = host.file("/etc/tmpfiles.d/jexida-worker.conf").content_string
    assert "/opt/jexida-jobs" not in rule
    assert "d /var/log/jexida-jobs 0750 builder builder 30d" in rule


def test_firewall_limits_ssh_to_the_controller(host):
    # The node has its own network namespace: this table lives only in the container.
    table = host.check_output("nft list table inet jexida_worker")
    assert "tcp dport 22 ip saddr 192.0.2.10 accept" in table
    assert "ip6 saddr 2001:db8::10 accept" in table
    assert "tcp dport 22 drop" in table
    assert 'include "/etc/nftables.d/jexida-worker.nft"' in host.file("/etc/nftables.conf").content_string
