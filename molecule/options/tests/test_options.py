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


def test_bastion_lets_the_worker_jump_to_the_listed_destination_only(host):
    worker = host.check_output("/usr/sbin/sshd -T -C user=builder,host=controller,addr=127.0.0.1")
    assert "allowtcpforwarding local" in worker and "permitopen 192.0.2.50:22" in worker
    assert "allowagentforwarding no" in worker and "x11forwarding no" in worker and "permittunnel no" in worker
    assert "allowstreamlocalforwarding no" in worker
    keys = host.file("/home/builder/.ssh/authorized_keys").content_string
    key_lines = [line for line in keys.splitlines() if line and not line.startswith("#")]
    assert "no-port-forwarding" not in key_lines[0] and "no-agent-forwarding" in key_lines[0]
    # Other accounts keep sshd's own defaults.
    root = host.check_output("/usr/sbin/sshd -T -C user=root,host=controller,addr=127.0.0.1")
    assert "permitopen any" in root


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


def test_tools_copied_from_the_controller(host):
    tools = host.file("/opt/jexida-worker")
    assert tools.is_directory
    assert (tools.user, tools.group, tools.mode) == ("builder", "builder", 0o750)
    expected = {
        "bin": (0o750, None),
        "lib": (0o750, None),
        "bin/jexida-hello": (0o755, None),
        "lib/common.sh": (0o644, None),
        "README.txt": (0o644, "Worker tools copied from the controller by jexida_worker_tools_src.\n"),
    }
    for name, (mode, content) in expected.items():
        entry = host.file(f"/opt/jexida-worker/{name}")
        assert entry.exists, name
        assert (entry.user, entry.group, entry.mode) == ("builder", "builder", mode), name
        if content is not None:
            assert entry.content_string == content
    # The folder's contents, not the folder itself, and nothing else.
    assert not host.file("/opt/jexida-worker/tools").exists
    listing = host.check_output("cd /opt/jexida-worker && find . -mindepth 1 | sort").split()
    assert listing == ["./README.txt", "./bin", "./bin/jexida-hello", "./lib", "./lib/common.sh"]
    # The worker user can run the copied tool; other users cannot reach it.
    assert host.check_output("runuser -u builder -- /opt/jexida-worker/bin/jexida-hello node") == (
        "hello from the tools folder, node"
    )
    assert host.run("runuser -u nobody -- ls /opt/jexida-worker").rc != 0
