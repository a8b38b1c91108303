"""Rules about removing files: rm, mv, recursive chmod/chown, find -delete, rsync --delete.

``rm`` needs only *recursive* (not *force*) to be refused on ``/``, a home or a top-level
system directory: commands run without a terminal, where ``rm -r /etc`` prompts for nothing.
A glob is judged by what it can match (``/e*`` can match ``/etc``; ``/var/log/*.gz`` only
files below ``/var/log``). An operand only known at run time needs a confirm, as does
emptying the directory the command starts in (``rm -rf *`` with no ``cd`` before it).
"""

from __future__ import annotations

from mcp_bridge.policy import options
from mcp_bridge.policy.base import Context, Finding, confirm, deny, from_verdict, unknown, worst
from mcp_bridge.policy.options import FLAG, OPTIONAL, VALUE
from mcp_bridge.policy.paths import SYMLINKED_TOP, removal_verdict
from mcp_bridge.policy.words import Arg

_RM_LONGS = {"force": FLAG, "interactive": OPTIONAL, "one-file-system": FLAG, "no-preserve-root": FLAG,
             "preserve-root": OPTIONAL, "recursive": FLAG, "dir": FLAG, "verbose": FLAG, "help": FLAG,
             "version": FLAG}
DELETERS = frozenset({"rm", "unlink", "rmdir", "shred", "srm", "wipe", "trash", "trash-put", "gio"})


def check_rm(args: list[Arg], ctx: Context) -> Finding | None:
    opts = options.parse(args, flags="fiIrRdv", longs=_RM_LONGS, aliases={"-r": "-R", "--recursive": "-R"})
    if opts.has("--help", "--version"):
        return None  # GNU rm prints and exits at --help before removing anything
    recursive = opts.has("-R")
    found: list[Finding | None] = []
    for operand in opts.operands:
        if operand.value is None:
            found.append(unknown(operand, "rm of a path only known at run time"))
            continue
        place = ctx.place(operand.value, follow_last=False)
        if recursive or operand.glob:
            verdict = removal_verdict(place, operand.value)
            if verdict is not None:
                flags = "recursive rm" if recursive else "rm of a glob"
                found.append(from_verdict(verdict, f"{flags} of"))
        elif place.kind == "abs" and place.path.strip("/").casefold() in SYMLINKED_TOP:
            found.append(deny("rm-system-dir", f"rm of '{operand.value}' removes the system link {place.path}, "
                              "without which nothing on the node runs"))
        if found and found[-1] is not None and found[-1].decision == "deny":
            break
    return worst(found)


def check_mv(args: list[Arg], ctx: Context) -> Finding | None:
    """Moving away /, a home or a system directory is as bad as removing it."""
    opts = options.parse(args, flags="bfinuvTZ", values="tS",
                         longs={"target-directory": VALUE, "suffix": VALUE, "backup": OPTIONAL, "help": FLAG})
    if opts.has("--help"):
        return None
    sources = opts.operands if opts.has("-t", "--target-directory") else opts.operands[:-1]
    for source in sources:
        if source.value is None:
            continue
        verdict = removal_verdict(ctx.place(source.value, follow_last=False), source.value)
        if verdict is not None and verdict.decision == "deny":
            return from_verdict(verdict, "mv moves away")
    return None


def check_perms(name: str, args: list[Arg], ctx: Context) -> Finding | None:
    """chmod/chown/chgrp -R of a whole tree breaks sshd, sudo and most services."""
    longs = {"recursive": FLAG, "reference": VALUE, "from": VALUE, "changes": FLAG, "silent": FLAG, "quiet": FLAG,
             "verbose": FLAG, "dereference": FLAG, "no-dereference": FLAG, "preserve-root": FLAG,
             "no-preserve-root": FLAG, "help": FLAG, "version": FLAG}
    opts = options.parse(args, flags="RcfvhHLPr" if name != "chmod" else "RcfvrwxXst", longs=longs,
                         aliases={"--recursive": "-R"})
    if not opts.has("-R") or opts.has("--help", "--version"):
        return None
    targets = opts.operands if opts.values("--reference") else opts.operands[1:]
    for target in targets:
        if target.value is None:
            continue
        verdict = removal_verdict(ctx.place(target.value), target.value)
        if verdict is not None and verdict.decision == "deny":
            return Finding("deny", "recursive-perms", f"{name} -R of {verdict.what}")
    return None


_FIND_NO_FILTER = frozenset({
    "-depth", "-d", "-xdev", "-mount", "-follow", "-noleaf", "-ignore_readdir_race", "-noignore_readdir_race",
    "-daystart", "-warn", "-nowarn", "-print", "-print0", "-ls", "-delete", "-true", "-maxdepth", "-mindepth",
    "-regextype", "-a", "-and", "-o", "-or", ",", "(", ")", "!", "-not", "-type", "-xtype",
})
_FIND_VALUE = frozenset({"-maxdepth", "-mindepth", "-regextype", "-files0-from", "-type", "-xtype"})
_FIND_EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})
_FIND_WRITE = frozenset({"-fprint", "-fprint0", "-fls", "-fprintf"})
_PATTERN_TESTS = frozenset({"-name", "-iname", "-path", "-ipath", "-wholename", "-iwholename"})


def check_find(args: list[Arg], ctx: Context) -> Finding | None:
    index = 0
    while index < len(args):  # find's own options come before the start points
        leading = args[index].value or ""
        if leading in ("-H", "-L", "-P") or (leading.startswith(("-O", "-D")) and len(leading) > 2):
            index += 1
        elif leading == "-D":
            index += 2
        else:
            break
    follow = any(a.value == "-L" or a.value == "-H" for a in args[:index])
    starts: list[Arg] = []
    while index < len(args) and not (args[index].value or "x").startswith(("-", "(", "!")):
        starts.append(args[index])
        index += 1
    deletes = False
    filtered = False
    found: list[Finding | None] = []
    while index < len(args):
        arg = args[index]
        text = arg.value or ""
        index += 1
        if arg.value is None:
            filtered = True  # a run-time word in the expression could be any test
            continue
        if text == "-delete":
            deletes = True
        elif text in _FIND_EXEC:
            end = index
            while end < len(args) and args[end].value not in (";", "+"):
                end += 1
            inner = [Arg(None, a.raw, why="'{}' is each file find finds") if a.value and "{}" in a.value else a
                     for a in args[index:end]]
            inner_name = (inner[0].value or "").rsplit("/", 1)[-1] if inner else ""
            if inner_name in DELETERS:
                deletes = True
            if inner:
                ctx.nested_argv(inner, skip_rules=inner_name in DELETERS)
            index = end + 1
        elif text in _FIND_WRITE:
            if index < len(args):
                from mcp_bridge.policy.rules_disk import check_written

                found.append(check_written(args[index], ctx, f"find {text}"))
            index += 2 if text == "-fprintf" else 1
        elif text in _PATTERN_TESTS:
            pattern = args[index].value if index < len(args) else None
            if pattern is None or pattern.strip("*") != "":
                filtered = True
            index += 1
        elif text in _FIND_NO_FILTER:
            index += 1 if text in _FIND_VALUE else 0
        elif text.startswith("-"):
            filtered = True
    if deletes:
        for start in starts or [Arg(".", ".")]:
            if start.value is None:
                found.append(unknown(start, "find deletes below a directory only known at run time"))
                continue
            place = ctx.place(start.value, follow_last=follow or start.value.endswith("/"))
            verdict = removal_verdict(place, start.value)
            if verdict is None:
                continue
            if verdict.decision == "deny":
                if filtered:
                    found.append(confirm("find-delete", f"find deletes the files its tests match in {verdict.what}: "
                                                        "how much that is cannot be known before it runs"))
                else:
                    found.append(deny("find-delete", f"find deletes everything in {verdict.what}"))
            elif not (filtered and verdict.rule == "dynamic-target"):
                found.append(from_verdict(verdict, "find deletes below"))
    return worst(found)


_RSYNC_VALUES = frozenset({
    "rsh", "rsync-path", "exclude", "include", "filter", "exclude-from", "include-from", "files-from", "backup-dir",
    "suffix", "temp-dir", "compare-dest", "copy-dest", "link-dest", "partial-dir", "chmod", "chown", "usermap",
    "groupmap", "timeout", "contimeout", "port", "sockopts", "password-file", "log-file", "log-file-format",
    "out-format", "bwlimit", "max-size", "min-size", "max-delete", "block-size", "compress-level",
    "skip-compress", "iconv", "checksum-choice", "protocol", "info", "debug", "modify-window", "outbuf",
    "stop-after", "stop-at", "write-batch", "only-write-batch", "read-batch", "address", "remote-option",
    "copy-as", "early-input", "compress-choice", "mkpath-mode",
})


_RSYNC_LONGS = {name: VALUE for name in _RSYNC_VALUES} | {
    flag: FLAG for flag in ("delete", "delete-before", "delete-during", "delete-delay", "delete-after",
                            "delete-excluded", "delete-missing-args", "del", "remove-source-files", "help",
                            "version", "dry-run",
                            # flags that are prefixes of options with a value (--partial of --partial-dir)
                            "partial", "backup", "checksum", "mkpath", "group", "compress")}


def rsync_options(args: list[Arg]) -> options.Options:
    """rsync's command line as rsync reads it (also for its -e/--rsh command, sources_tools.py)."""
    return options.parse(args, flags="vqcarlptgoDxRbuLkKHAXSWzhPnCiIOJEyU0468m", values="efBTM",
                         longs=_RSYNC_LONGS, aliases={"-e": "--rsh"})


def check_rsync(args: list[Arg], ctx: Context) -> Finding | None:
    opts = rsync_options(args)
    if opts.has("--help", "--version") or opts.has("-n", "--dry-run"):
        return None
    deletes = any(name.startswith("--del") for name, _ in opts.seen)
    removes_sources = opts.has("--remove-source-files")
    if not (deletes or removes_sources) or len(opts.operands) < 2:
        return None
    found: list[Finding | None] = []
    checked = [("onto", opts.operands[-1])] if deletes else []
    if removes_sources:
        checked += [("from", source) for source in opts.operands[:-1]]
    for role, arg in checked:
        flag = "--delete" if role == "onto" else "--remove-source-files"
        if arg.value is None:
            found.append(unknown(arg, f"rsync {flag} {role} a directory only known at run time"))
            continue
        text = arg.value
        host, colon, remote = text.partition(":")
        if colon and "/" not in host and host:
            text = remote if remote.startswith(("/", "~")) else "~/" + remote  # a remote path: home-relative
        verdict = removal_verdict(ctx.place(text), arg.value)
        if verdict is None:
            continue
        if verdict.decision == "deny":
            found.append(deny("rsync-delete", f"rsync {flag} {role} {verdict.what}: files there not in the "
                                              "source are deleted" if role == "onto" else
                              f"rsync {flag} deletes every file it copies from {verdict.what}"))
        else:
            found.append(from_verdict(verdict, f"rsync {flag} {role}"))
    return worst(found)
