"""What rules return and what they may ask of the walk; the built-in rule ids and advice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mcp_bridge.policy.paths import Cwd, Place, Verdict
from mcp_bridge.policy.words import Arg

# Stable ids: policy files, audit entries and the CLI refer to them.
BUILTIN_RULES: dict[str, str] = {
    # deny: known destructive
    "rm-root": "recursive removal of the filesystem root (or a glob of it)",
    "rm-home": "recursive removal of a whole home directory",
    "rm-system-dir": "removal of a top-level system directory (/etc, /usr, /var...), or moving it away",
    "recursive-perms": "recursive chmod/chown/chgrp of /, a home or a top-level system directory",
    "find-delete": "find -delete or find -exec rm over /, a home or a system directory",
    "rsync-delete": "rsync --delete (or --remove-source-files) onto /, a home or a system directory",
    "disk-format": "creating a filesystem on a device or wiping its signatures (mkfs, wipefs -a, diskutil erase)",
    "disk-wipe": "wiping or repartitioning a device (shred, blkdiscard, sgdisk --zap-all, parted mklabel, "
                 "mkswap, nvme format, badblocks -w, cp onto a device, lvremove...)",
    "dd-block-device": "dd writing onto a block device",
    "redirect-block-device": "output written onto a block device (>, >>, tee)",
    "fork-bomb": "a self-replicating function (fork bomb)",
    "power-state": "shutting down, rebooting, suspending the node or dropping it to rescue mode",
    "kexec": "booting another kernel with kexec",
    "kill-init": "signalling PID 1 or every process (kill 1, kill -1, pkill systemd, killall5)",
    "strict-mode": "strict mode: a command no allow rule matches",
    # confirm: cannot be decided statically
    "dynamic-program": "a program name only known at run time (variables, substitutions, globs)",
    "dynamic-target": "a target a rule must check that is only known at run time",
    "code-from-elsewhere": "code handed to a shell or interpreter at run time (pipes into sh, eval of a "
                           "variable, process substitution, xargs rm...)",
    "path-escape": "a path whose real place is unclear ('..' through a system directory, /proc/*/root, "
                   "a link made in the same command)",
    "too-complex": "a command over the size, nesting or work limits of the analysis",
    "unparseable": "a command line the policy cannot parse (unbalanced quotes, brackets)",
}

ADVICE = {
    "rm-root": "delete the specific paths you mean instead",
    "rm-home": "name the files or folders inside the home directory instead",
    "rm-system-dir": "act on a specific path below it instead",
    "recursive-perms": "change a specific path below it instead",
    "find-delete": "start find in the specific directory you mean",
    "rsync-delete": "sync into a specific directory below it",
    "disk-format": "formatting disks is not done through the bridge; do it on the node by hand",
    "disk-wipe": "wiping disks is not done through the bridge; do it on the node by hand",
    "dd-block-device": "write to a regular file instead (of=/tmp/disk.img)",
    "redirect-block-device": "write to a regular file (or /dev/null) instead",
    "fork-bomb": "remove the self-calling function",
    "power-state": "power actions are not done through the bridge; use the node's own tooling",
    "kexec": "power actions are not done through the bridge; use the node's own tooling",
    "kill-init": "signal the specific process you mean",
    "dynamic-program": "write the program name out literally, or a person must confirm it",
    "dynamic-target": "write the target out literally, or a person must confirm it",
    "code-from-elsewhere": "put the code itself in the command, or a person must confirm it",
    "path-escape": "write the path out without '..' or links, or a person must confirm it",
    "too-complex": "split or simplify the command, or a person must confirm it",
    "unparseable": "balance the quotes and brackets, or a person must confirm it",
}


@dataclass(frozen=True, slots=True)
class Finding:
    decision: str  # "deny" or "confirm"
    rule: str
    what: str


def deny(rule: str, what: str) -> Finding:
    return Finding("deny", rule, what)


def confirm(rule: str, what: str) -> Finding:
    return Finding("confirm", rule, what)


def from_verdict(verdict: Verdict, prefix: str, rule: str | None = None) -> Finding:
    """A path verdict as a finding; ``rule`` replaces the verdict's rule for denials."""
    chosen = rule if (rule and verdict.decision == "deny") else verdict.rule
    return Finding(verdict.decision, chosen, f"{prefix} {verdict.what}")


def unknown(arg: Arg, what: str) -> Finding:
    """A rule needs ``arg`` but it is only known at run time."""
    reason = arg.why or f"'{arg.raw}' is only known at run time"
    return Finding("confirm", arg.rule, f"{what}: {reason}")


def worst(findings: list[Finding | None]) -> Finding | None:
    """The first denial, else the first confirm."""
    present = [f for f in findings if f is not None]
    return next((f for f in present if f.decision == "deny"), present[0] if present else None)


class Context(Protocol):
    """What a rule may ask of the walk."""

    cwd: Cwd

    def place(self, text: str, follow_last: bool = True) -> Place: ...

    def nested_argv(self, argv: list[Arg], skip_rules: bool = False) -> None: ...
