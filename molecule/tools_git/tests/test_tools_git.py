"""Worker tools checked out from git, offline (testinfra, over podman exec)."""

from __future__ import annotations

CHECKOUT = "/opt/jexida-worker"


def as_worker(host, command: str) -> str:
    return host.check_output(f"runuser -u jexida -- {command}")


def test_git_installed_because_a_git_source_is_set(host):
    assert host.package("git").is_installed


def test_checkout_owned_by_the_worker(host):
    folder = host.file(CHECKOUT)
    assert (folder.user, folder.group, folder.mode) == ("jexida", "jexida", 0o750)
    assert host.file(f"{CHECKOUT}/.git").user == "jexida"
    assert host.check_output(f"find {CHECKOUT} ! -user jexida -o ! -group jexida") == ""
    # umask 0027: nothing in the checkout is open to other users.
    assert host.check_output(f"find {CHECKOUT} -perm /0007") == ""
    assert host.run(f"runuser -u nobody -- ls {CHECKOUT}").rc != 0


def test_checkout_is_the_requested_tag(host):
    # main moved on to VERSION 2; the role asked for v1.
    assert host.file(f"{CHECKOUT}/VERSION").content_string == "1\n"
    assert as_worker(host, f"git -C {CHECKOUT} describe --tags --exact-match") == "v1"
    assert as_worker(host, f"git -C {CHECKOUT} remote get-url origin") == "file:///srv/tools.git"
    assert as_worker(host, f"git -C {CHECKOUT} status --porcelain") == ""


def test_tool_runs_as_the_worker(host):
    assert host.file(f"{CHECKOUT}/bin/jexida-hello").mode == 0o750
    assert host.file(f"{CHECKOUT}/VERSION").mode == 0o640
    assert as_worker(host, f"{CHECKOUT}/bin/jexida-hello") == "hello from tools 1"
