"""The command policy: parsed rules, wrappers, nested shells, and policy files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_bridge.policy import BUILTIN_RULES, CommandPolicy, PolicyError

# (command, the rule that must refuse it, or None when it must be allowed)
CASES: list[tuple[str, str | None]] = [
    # rm of the root, every flag spelling
    ("rm -rf /", "rm-root"),
    ("rm -fr /", "rm-root"),
    ("rm -r -f /", "rm-root"),
    ("rm -f -r /", "rm-root"),
    ("rm -R /", "rm-root"),
    ("rm -Rf /", "rm-root"),
    ("rm -fR /", "rm-root"),
    ("rm -rfv /", "rm-root"),
    ("rm --recursive --force /", "rm-root"),
    ("rm --force --recursive /", "rm-root"),
    ("rm --rec /", "rm-root"),
    ("rm -rf --no-preserve-root /", "rm-root"),
    ("rm --no-preserve-root -rf /", "rm-root"),
    ("rm -rf -- /", "rm-root"),
    ("rm / -rf", "rm-root"),
    ("rm -r /", "rm-root"),
    ("rm -rf /*", "rm-root"),
    ("rm -f /*", "rm-root"),
    ("rm -rf //", "rm-root"),
    ("rm -rf /.", "rm-root"),
    ("rm -rf /tmp/..", "rm-root"),
    ('rm -rf "/"', "rm-root"),
    ("rm -rf '/'", "rm-root"),
    ("\\rm -rf /", "rm-root"),
    ("/bin/rm -rf /", "rm-root"),
    # home directories
    ("rm -rf ~", "rm-home"),
    ("rm -rf ~/", "rm-home"),
    ("rm -rf $HOME", "rm-home"),
    ('rm -rf "$HOME"', "rm-home"),
    ('rm -rf "${HOME}"/*', "rm-home"),
    ("rm -rf ~/*", "rm-home"),
    ("rm -rf ~/build", None),
    ("rm -rf $HOME/.cache/pip", None),
    # top-level system directories and their globs
    ("rm -rf /etc", "rm-system-dir"),
    ("rm -rf /etc/", "rm-system-dir"),
    ("/usr/bin/rm -rf /usr", "rm-system-dir"),
    ("rm -rf /usr/*", "rm-system-dir"),
    ("rm -rf /home/*", "rm-system-dir"),
    ("rm -rf /var/*", "rm-system-dir"),
    ("rm -rf /boot", "rm-system-dir"),
    ("rm -rf /opt", "rm-system-dir"),
    ("rm -Rf /lib64", "rm-system-dir"),
    ("rm -rf /e*", "rm-system-dir"),
    ("rm -rf /tmp/../etc", "rm-system-dir"),
    ("rm -f /etc/*", "rm-system-dir"),
    ("rm -rf /Users", "rm-system-dir"),
    # benign removals (the old server refused `rm -rf /tmp/x`)
    ("rm -rf /tmp/x", None),
    ("rm -rf ./build", None),
    ("rm -rf build dist *.egg-info", None),
    ("rm -r /var/tmp/foo", None),
    ("rm -rf /var/log/*.gz", None),
    ("rm -rf /opt/jexida-jobs/123", None),
    ("rm -rf /home/alice/scratch", None),
    ("rm /etc", None),  # not recursive: fails on a directory, deletes nothing
    ("rm -rf /tmp", None),
    ('rm -rf "$BUILD_DIR"/*', None),  # unknowable statically; documented
    ("rm -rf *", None),  # relative to an unknown directory
    # wrappers
    ("sudo rm -rf /", "rm-root"),
    ("sudo -u root rm -rf /", "rm-root"),
    ("sudo -E -u root -- rm -rf /etc", "rm-system-dir"),
    ("doas rm -rf /", "rm-root"),
    ("env FOO=1 rm -rf /", "rm-root"),
    ("env -i PATH=/bin rm -rf /", "rm-root"),
    ("FOO=1 BAR=2 rm -rf /", "rm-root"),
    ("nice -n 10 rm -rf /", "rm-root"),
    ("nice -10 rm -rf /", "rm-root"),
    ("nohup rm -rf / &", "rm-root"),
    ("timeout 10 rm -rf /", "rm-root"),
    ("timeout -s KILL 5m rm -rf /boot", "rm-system-dir"),
    ("sudo nice -n 5 timeout 60 nohup rm -rf /", "rm-root"),
    ("command rm -rf /", "rm-root"),
    ("exec rm -rf /", "rm-root"),
    ("busybox rm -rf /", "rm-root"),
    ("time rm -rf /", "rm-root"),
    ("ls / | xargs rm -rf /", "rm-root"),
    ("ls | xargs -i rm -rf /tmp/{}", None),
    ("find . -name '*.pyc' | xargs rm -f", None),
    ("env -S 'rm -rf /'", "rm-root"),
    ("command -v reboot", None),
    ("sudo apt-get install -y htop", None),
    # nested shells and substitutions
    ("bash -c 'rm -rf /'", "rm-root"),
    ('sh -c "sudo rm -rf /etc"', "rm-system-dir"),
    ("bash -c \"bash -c 'rm -rf /'\"", "rm-root"),
    ("bash -lc 'echo hi; reboot'", "power-state"),
    ("bash -e -x -c 'reboot'", "power-state"),
    ("sudo bash -c 'cd / && rm -rf *'", "rm-root"),
    ("echo $(rm -rf /)", "rm-root"),
    ("echo `reboot`", "power-state"),
    ('echo "$(echo "nested $(reboot)")"', "power-state"),
    ("x=${y:-$(reboot)}", "power-state"),
    ("diff <(ls /) <(reboot)", "power-state"),
    ('eval "rm -rf /"', "rm-root"),
    ("su -c 'reboot'", "power-state"),
    ("echo 'rm -rf /' | bash", "rm-root"),
    ("printf 'cd /\\nrm -rf *\\n' | sh", "rm-root"),
    ("bash <<< 'reboot'", "power-state"),
    ("bash <<EOF\nrm -rf /\nEOF", "rm-root"),
    ("bash -c 'echo hello world'", None),
    ("echo 'rm -rf /'", None),
    ('echo "rm -rf /" > notes.txt', None),
    ("cat <<EOF > notes.txt\nreboot the server\nEOF", None),
    ("cat <<'EOF'\n$(reboot)\nEOF", None),  # quoted delimiter: the body is data
    ("cat <<EOF\n$(reboot)\nEOF", "power-state"),  # unquoted: $(...) in the body runs
    ("echo $((1 << 2)) > /tmp/x", None),
    # sequences and pipelines
    ("cd / && rm -rf *", "rm-root"),
    ("cd /var; rm -rf ./*", "rm-system-dir"),
    ("cd /tmp && rm -rf *", None),
    ("echo a\nrm -rf /", "rm-root"),
    ("true && rm -rf /", "rm-root"),
    ("false || rm -rf /", "rm-root"),
    ("ls | grep x; rm -rf /", "rm-root"),
    ("for d in a b; do rm -rf /tmp/$d; done", None),
    ("if true; then reboot; fi", "power-state"),
    ("while true; do sleep 1; done & reboot", "power-state"),
    ("case $x in a) reboot;; esac", "power-state"),
    ("echo ';reboot'", None),
    ("echo a; echo '&& rm -rf /'", None),
    ("python3 -c 'print(1)' | grep 1 && echo ok || echo no", None),
    ("make -j8 2>&1 | tee build.log", None),
    # disks
    ("mkfs.ext4 /dev/sdb1", "disk-format"),
    ("mkfs -t xfs /dev/sdb", "disk-format"),
    ("sudo mkfs.vfat /dev/mmcblk0p1", "disk-format"),
    ("mke2fs /dev/sdb", "disk-format"),
    ("wipefs -a /dev/sdb", "disk-format"),
    ("wipefs --all /dev/nvme0n1", "disk-format"),
    ("wipefs /dev/sdb", None),  # lists signatures only
    ("diskutil eraseDisk APFS X disk2", "disk-format"),
    ("dd if=/dev/zero of=/dev/sda bs=1M", "dd-block-device"),
    ("dd if=/dev/zero of=/dev/nvme0n1", "dd-block-device"),
    ("dd if=img of=/dev/mmcblk0 status=progress", "dd-block-device"),
    ("dd if=img of=/dev/xvda", "dd-block-device"),
    ("dd if=img of=/dev/dm-0", "dd-block-device"),
    ("dd if=img of=/dev/disk2", "dd-block-device"),
    ("dd if=/dev/zero of=/tmp/f bs=1M count=1", None),
    ("dd if=/dev/sda of=/tmp/disk.img", None),
    ("echo x > /dev/sda", "redirect-block-device"),
    ("cat img >/dev/nvme0n1", "redirect-block-device"),
    ("cat img>>/dev/vdb", "redirect-block-device"),
    ("echo hi 2>/dev/hda", "redirect-block-device"),
    ("cat img &> /dev/loop0", "redirect-block-device"),
    ("cat img | sudo tee /dev/sda > /dev/null", "redirect-block-device"),
    ("exec 3<>/dev/md0", "redirect-block-device"),
    ("echo > /dev/null", None),
    ("echo hi >/dev/stderr 2>&1", None),
    ("ls /dev/sda", None),
    ("cat /dev/sda > /tmp/disk.img", None),
    ("echo '>' /dev/sda", None),
    # fork bombs
    (":(){ :|:& };:", "fork-bomb"),
    (":(){ :|: & };:", "fork-bomb"),
    ("bomb() { bomb | bomb & }; bomb", "fork-bomb"),
    ("f(){ f|f& };f", "fork-bomb"),
    ("function f { f | f & }; f", "fork-bomb"),
    ("function f() { f & f; }; f", "fork-bomb"),
    ("f() { echo f | cat; }; f", None),
    ("greet() { echo hi; }; greet", None),
    # power state
    ("shutdown -h now", "power-state"),
    ("shutdown -r +5", "power-state"),
    ("shutdown -c", None),
    ("reboot", "power-state"),
    ("sudo /sbin/reboot", "power-state"),
    ("halt", "power-state"),
    ("poweroff", "power-state"),
    ("init 0", "power-state"),
    ("init 6", "power-state"),
    ("telinit 6", "power-state"),
    ("init 3", None),
    ("systemctl poweroff", "power-state"),
    ("systemctl reboot", "power-state"),
    ("systemctl halt", "power-state"),
    ("sudo systemctl --no-block reboot", "power-state"),
    ("systemctl isolate reboot.target", "power-state"),
    ("echo b > /proc/sysrq-trigger", "power-state"),
    ("systemctl restart nginx", None),
    ("systemctl status reboot.target", None),
    ("grep reboot log.txt", None),
    ("echo shutdown", None),
    ("journalctl -b -1 | grep -i poweroff", None),
    ("reboot() { echo hi; }", None),
    # unparseable
    ("echo 'unterminated", "unparseable"),
    ('echo "unterminated', "unparseable"),
    ("echo $(ls", "unparseable"),
    ("echo `ls", "unparseable"),
    ("bash -c \"echo 'x\"", "unparseable"),
    ("echo hi >", "unparseable"),
    ("echo " + "$(" * 2000 + "x" + ")" * 2000, "unparseable"),
    ("echo hi # don't worry, a comment", None),
    # quoting, grouping and continuation do not hide a command
    ("rm -rf /tmp/x /", "rm-root"),
    ("rm -rf \\\n/", "rm-root"),
    ("$'rm' -rf /", "rm-root"),
    ("r\\m -rf /", "rm-root"),
    ('"rm" -rf /', "rm-root"),
    ("{ rm -rf /; }", "rm-root"),
    ("(rm -rf /)", "rm-root"),
    ("! rm -rf /", "rm-root"),
    ("echo $(echo ')'; reboot)", "power-state"),
    ('echo "$(echo ")")"; halt', "power-state"),
    ("cat x | dd of=/dev/sdb", "dd-block-device"),
    ("sudo --user root rm -rf /", "rm-root"),
    ("xargs -0 rm -rf /", "rm-root"),
    ("cat <<-END\n\treboot\n\tEND\necho done", None),
    ("ssh build-box reboot", None),  # the remote command line is not inspected
    # review gaps: substitutions inside arithmetic
    ("echo $(( $(reboot) ))", "power-state"),
    ("echo $(( `reboot` + 1 ))", "power-state"),
    ("x=$(( 1 + $(rm -rf /) ))", "rm-root"),
    ("echo $((reboot) )", "power-state"),  # `$(` + subshell, not arithmetic
    ("echo $((1+2))", None),
    ("echo $(( x > 1 ? 2 : 3 ))", None),
    # review gaps: more wrappers and reserved words
    ("coproc reboot", "power-state"),
    ("coproc NAME { reboot; }", "power-state"),
    ("chroot / rm -rf /", "rm-root"),
    ("chroot --userspec=1:1 /mnt reboot", "power-state"),
    ("runuser -u root -- rm -rf /", "rm-root"),
    ("runuser -l root -c 'reboot'", "power-state"),
    ("flock /tmp/f rm -rf /", "rm-root"),
    ("flock -w 5 /tmp/f -c 'reboot'", "power-state"),
    ("nsenter -t 1 -m -u reboot", "power-state"),
    ("nsenter -m/proc/1/ns/mnt reboot", "power-state"),
    ("nsenter --target 1 --mount rm -rf /", "rm-root"),
    ("taskset -c 0 rm -rf /", "rm-root"),
    ("taskset 0x1 reboot", "power-state"),
    ("chrt 10 reboot", "power-state"),
    ("chrt -f 10 rm -rf /", "rm-root"),
    ("unshare -m rm -rf /", "rm-root"),
    ("unshare --mount --pid --fork reboot", "power-state"),
    ("watch -n 1 reboot", "power-state"),
    ("watch 'rm -rf /'", "rm-root"),
    ("watch -x -n 1 rm -rf /", "rm-root"),
    ("taskset -p 1234", None),
    ("chrt -p 1234", None),
    ("watch -n 1 df -h", None),
    ("flock /tmp/f make", None),
    ("chroot /srv/jail ls", None),
    # review gaps: here-docs and here-strings of a bare cat piped into a shell
    ("cat <<EOF | sh\nrm -rf /\nEOF", "rm-root"),
    ("cat <<< 'reboot' | bash", "power-state"),
    ("cat <<'EOF' | sudo bash\nreboot\nEOF", "power-state"),
    ("cat file | grep x", None),
    ("cat <<EOF | grep x\nrm -rf /\nEOF", None),
    ("cat notes.txt | sh", None),  # the file's content is not in the command line
    # review gaps: ${...} inside double quotes
    ('echo "${x:-\'$(reboot)\'}"', "power-state"),
    ("echo \"${x:-'a b'}\"", None),
    # review gaps: tee and redirections share one target check
    ("echo b | tee /proc/sysrq-trigger", "power-state"),
    ("echo b | sudo tee -a /proc/sysrq-trigger", "power-state"),
    ("echo b | tee /tmp/out", None),
    # review gaps: cd inside a subshell does not leak; pushd is followed
    ("cd / ; (cd /tmp); rm -rf *", "rm-root"),
    ("cd /; (cd /tmp && ls); rm -rf *", "rm-root"),
    ("cd /; x=$(cd /tmp); rm -rf *", "rm-root"),
    ("cd /; cd /tmp | true; rm -rf *", "rm-root"),
    ("cd /tmp; (cd /; ls); rm -rf *", None),
    ("(cd /tmp && rm -rf *)", None),
    ("pushd / && rm -rf *", "rm-root"),
    ("pushd /tmp && rm -rf *", None),
    ("cd /; popd; rm -rf *", None),  # the directory popd returns to is not tracked
    # ordinary work
    ("", None),
    ("uptime", None),
    ("cd /opt/jexida-jobs && make test", None),
    ("pip install -r requirements.txt && pytest -q", None),
    ("tar czf /tmp/out.tgz ./build", None),
]


@pytest.mark.parametrize(("command", "rule"), CASES, ids=[repr(c)[:60] for c, _ in CASES])
def test_builtin_rules(command: str, rule: str | None) -> None:
    decision = CommandPolicy().check(command)
    assert decision.allowed is (rule is None), decision.reason
    assert decision.rule == rule, decision.reason


def test_table_is_thorough() -> None:
    assert len(CASES) >= 50
    assert {rule for _, rule in CASES} >= set(BUILTIN_RULES)


def test_refusal_names_rule_and_remedy() -> None:
    decision = CommandPolicy().check("cd /srv && sudo rm -rf /etc")
    assert not decision.allowed
    assert "rm-system-dir" in decision.reason
    assert "/etc" in decision.reason
    assert "allow rule" in decision.reason  # what to do when it is really intended
    assert "Delete a specific path" in decision.reason


def test_refusal_shows_where_a_relative_target_resolves() -> None:
    decision = CommandPolicy().check("cd / && rm -rf *")
    assert "'*' (/*)" in decision.reason


def test_fork_bomb_reason_shows_the_function() -> None:
    decision = CommandPolicy().check(":(){ :|:& };:")
    assert "`:() { : | : & }`" in decision.reason


def test_unparseable_reason_is_clear() -> None:
    decision = CommandPolicy().check("echo 'oops")
    assert decision.rule == "unparseable"
    assert "single quote" in decision.reason
    assert "never closed" in decision.reason


def test_deep_nesting_is_refused() -> None:
    command = "true"
    for _ in range(12):
        command = "bash -c " + "'" + command.replace("'", "'\\''") + "'"
    decision = CommandPolicy().check(command)
    assert decision.rule == "unparseable"
    assert "nested" in decision.reason


# --------------------------------------------------------------------------------------
# Policy files
# --------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yml"
    path.write_text(text)
    return path


def test_no_file_or_missing_file_means_builtins(tmp_path: Path) -> None:
    for policy in (CommandPolicy.from_file(None), CommandPolicy.from_file(tmp_path / "absent.yml")):
        assert policy.check("reboot").rule == "power-state"
        assert policy.check("uptime").allowed


def test_empty_file_means_builtins(tmp_path: Path) -> None:
    policy = CommandPolicy.from_file(write(tmp_path, ""))
    assert policy.check("rm -rf /").rule == "rm-root"


def test_custom_deny_rules_add_to_builtins(tmp_path: Path) -> None:
    policy = CommandPolicy.from_file(write(tmp_path, """
deny:
  - id: no-apt-remove
    reason: packages are managed by the worker role
    argv0: apt*
    args_regex: '\\b(remove|purge)\\b'
  - id: no-curl-to-internal
    reason: the metadata service is off limits
    regex: '169\\.254\\.169\\.254'
"""))
    decision = policy.check("sudo apt-get remove -y nginx")
    assert decision.rule == "no-apt-remove"
    assert "packages are managed by the worker role" in decision.reason
    assert str(tmp_path / "policy.yml") in decision.reason
    assert policy.check("apt-get install -y nginx").allowed
    assert policy.check("bash -c 'curl http://169.254.169.254/latest'").rule == "no-curl-to-internal"
    assert policy.check("rm -rf /").rule == "rm-root"  # built-ins still apply


def test_allow_rule_overrides_builtin_for_exactly_that_command(tmp_path: Path) -> None:
    policy = CommandPolicy.from_file(write(tmp_path, """
allow:
  - id: lab-reboot
    reason: lab nodes may be rebooted
    argv0: reboot
  - id: scratch-disk
    reason: /dev/vdb is the scratch disk
    argv0: mkfs.ext4
    args_regex: '^(-F )?/dev/vdb$'
"""))
    decision = policy.check("sudo reboot")
    assert decision.allowed
    assert decision.rule == "lab-reboot"
    assert "power-state" in decision.reason
    assert policy.check("mkfs.ext4 /dev/vdb").allowed
    assert policy.check("mkfs.ext4 /dev/vda").rule == "disk-format"
    # Only the matching simple command is let through, not its neighbours.
    assert policy.check("reboot; rm -rf /").rule == "rm-root"
    assert policy.check("echo ok && reboot && halt").rule == "power-state"
    assert policy.check("reboot").allowed


def test_allow_rule_does_not_open_nested_commands(tmp_path: Path) -> None:
    policy = CommandPolicy.from_file(write(tmp_path, """
allow:
  - id: any-bash
    reason: too broad on purpose
    argv0: bash
"""))
    assert policy.check("bash -c 'rm -rf /'").rule == "rm-root"
    assert policy.check("reboot $(echo now)").rule == "power-state"


def test_allow_rule_by_regex(tmp_path: Path) -> None:
    policy = CommandPolicy.from_file(write(tmp_path, """
allow:
  - id: wipe-loop
    reason: loop devices in tests
    regex: '^dd if=/dev/zero of=/dev/loop7( |$)'
"""))
    assert policy.check("dd if=/dev/zero of=/dev/loop7 bs=1M").allowed
    assert policy.check("dd if=/dev/zero of=/dev/loop6").rule == "dd-block-device"


def test_user_deny_beats_allow(tmp_path: Path) -> None:
    policy = CommandPolicy.from_file(write(tmp_path, """
deny:
  - id: never-reboot
    reason: production
    argv0: reboot
allow:
  - id: lab-reboot
    reason: lab
    argv0: reboot
"""))
    assert policy.check("reboot").rule == "never-reboot"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("deny: [", "not valid YAML"),
        ("- id: x", "top level must be a mapping"),
        ("denied: []", "unknown top-level field 'denied'"),
        ("deny: {id: x}", "'deny' must be a list"),
        ("deny: [just-a-string]", "deny[0]: a rule must be a mapping"),
        ("deny:\n  - reason: r\n    argv0: x", "deny[0].id: required"),
        ("deny:\n  - id: x\n    argv0: x", "deny[0].reason: required"),
        ("deny:\n  - id: x\n    reason: r", "deny[0].argv0: a rule needs exactly one of"),
        ("deny:\n  - id: x\n    reason: r\n    argv0: a\n    regex: b", "deny[0].argv0: a rule needs exactly one of"),
        ("allow:\n  - id: x\n    reason: r\n    regex: '('", "allow[0].regex: invalid regular expression"),
        ("allow:\n  - id: x\n    reason: r\n    argv0: a\n    args_regex: '['", "allow[0].args_regex: invalid"),
        ("allow:\n  - id: x\n    reason: r\n    regex: a\n    args_regex: b", "allow[0].args_regex: only allowed"),
        ("deny:\n  - id: x\n    reason: r\n    argv0: a\n    argv: b", "deny[0].argv: unknown field"),
        ("deny:\n  - id: x\n    reason: r\n    argv0: [a]", "deny[0].argv0: must be a non-empty string"),
        ("deny:\n  - id: rm-root\n    reason: r\n    argv0: a", "deny[0].id: 'rm-root' is the id of a built-in"),
        (
            "deny:\n  - {id: x, reason: r, argv0: a}\nallow:\n  - {id: x, reason: r, argv0: b}",
            "allow[0].id: 'x' is used by another rule",
        ),
        ("deny:\n  - {id: 'has space', reason: r, argv0: a}", "deny[0].id: 'has space' is not a valid id"),
    ],
)
def test_malformed_file_names_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        CommandPolicy.from_file(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)
