"""Programs that run shell code given in their options or environment, and files run as code.

``git -c alias.x='!cmd'`` and ``git -c core.sshCommand=...``, ``ssh -o ProxyCommand=...``,
``rsync -e CMD``, ``tar --to-command``/``-I``/``--checkpoint-action=exec=``, ``zip -TT``,
``make -f -``/``--eval``, and variables such as ``GIT_SSH_COMMAND``, ``PAGER``, ``EDITOR`` or
``PS4`` that programs hand to a shell: their values are analysed as shell code. This covers
the common cases of a long list (see GTFOBins); the README says so.
"""

from __future__ import annotations

import re

from mcp_bridge.policy import options
from mcp_bridge.policy.options import OPTIONAL, VALUE, Options
from mcp_bridge.policy.rules_files import rsync_options
from mcp_bridge.policy.sources import STDIN_PATHS, CodeRun, _dynamic_code, _static_code
from mcp_bridge.policy.words import Arg

# Environment variables whose value some program runs as a shell command.
COMMAND_VARIABLES = frozenset({
    "GIT_SSH_COMMAND", "GIT_SSH", "GIT_EDITOR", "GIT_PAGER", "GIT_SEQUENCE_EDITOR", "GIT_EXTERNAL_DIFF",
    "GIT_PROXY_COMMAND", "GIT_ASKPASS", "SSH_ASKPASS", "SUDO_ASKPASS", "PAGER", "EDITOR", "VISUAL", "MANPAGER",
    "SYSTEMD_PAGER", "LESSOPEN", "LESSCLOSE", "BROWSER", "SUDO_EDITOR", "PS4", "PROMPT_COMMAND", "RSYNC_RSH",
    "FCEDIT", "TAR_OPTIONS",
})
_GIT_COMMAND_KEY = re.compile(
    r"^(alias\..+|core\.(pager|editor|sshcommand|fsmonitor|askpass|gitproxy)|diff\.external|sequence\.editor|"
    r"credential\.helper|credential\..+\.helper|gpg\.program|gpg\..+\.program|pager\..+|interactive\.difffilter|"
    r"uploadpack\.packobjectshook|filter\..+\.(clean|smudge|process)|merge\..+\.driver|"
    r"diff\..+\.(textconv|command)|remote\..+\.(uploadpack|receivepack|proxy))$", re.IGNORECASE)
_SSH_COMMAND_OPTIONS = re.compile(r"^\s*(proxycommand|localcommand|knownhostscommand|remotecommand)\s*[= ]\s*(.*)$",
                                  re.IGNORECASE | re.DOTALL)


def tool_code(name: str, args: list[Arg]) -> CodeRun | None:
    if name == "git":
        return _git(args)
    if name in ("ssh", "scp", "sftp", "sshfs"):
        return _ssh_options(args)
    if name == "rsync":
        return _rsync(args)
    if name in ("tar", "gtar", "bsdtar"):
        return _tar(args)
    if name == "zip":
        return _zip(args)
    if name in ("make", "gmake"):
        return _make(args)
    return None


def variable_code(name: str, value: Arg) -> tuple[Arg, str] | None:
    """Shell code carried by an assignment such as ``GIT_SSH_COMMAND=...``."""
    if name in COMMAND_VARIABLES:
        return value, f"the {name} variable"
    return None


def _git(args: list[Arg]) -> CodeRun:
    run = CodeRun()
    index = 0
    while index < len(args):
        text = args[index].value
        if text is None or not text.startswith("-"):
            break
        if text == "-c" and index + 1 < len(args):
            setting = args[index + 1]
            if setting.value is None:
                run.findings.append(_unknown_setting(setting))
            else:
                key, _, value = setting.value.partition("=")
                if _GIT_COMMAND_KEY.match(key):
                    code = value[1:] if value.startswith("!") else value
                    if key.lower().startswith("alias.") and not value.startswith("!"):
                        code = ""
                    if code:
                        run.scripts.append((Arg(code, code), f"git -c {key}"))
            index += 2
            continue
        index += 2 if text in ("-C", "--git-dir", "--work-tree", "--namespace", "--exec-path") else 1
    for arg in args:
        if arg.value is not None and arg.value.startswith("ext::"):
            code = arg.value[5:].replace("%%", "%")
            run.scripts.append((Arg(code, code), "a git ext:: URL"))
    return run


def _unknown_setting(setting: Arg) -> object:
    from mcp_bridge.policy.base import confirm

    return confirm("code-from-elsewhere", f"git -c with a setting only known at run time (settings such as "
                                          f"alias.* or core.sshCommand run commands): {setting.why}")


def _ssh_options(args: list[Arg]) -> CodeRun:
    run = CodeRun()
    for index, arg in enumerate(args):
        text = arg.value
        if text is None:
            continue
        option = None
        if text == "-o" and index + 1 < len(args):
            option = args[index + 1].value
            if option is None:
                continue
        elif text.startswith("-o") and len(text) > 2:
            option = text[2:]
        if option is not None and (match := _SSH_COMMAND_OPTIONS.match(option)):
            code = match.group(2).strip()
            if code and code.lower() != "none":
                run.scripts.append((Arg(code, code), f"ssh -o {match.group(1)}"))
    return run


def _option_code(opts: Options, codes: dict[str, str], run: CodeRun, strip: dict[str, str] | None = None) -> None:
    """The values of the options in ``codes`` (option -> how to name it) analysed as shell code.

    A value only known at run time asks a person. ``strip`` names options whose value holds the
    code after a prefix (``--checkpoint-action=exec=CMD``)."""
    for position, (name, value) in enumerate(opts.seen):
        how = codes.get(name)
        if how is None:
            continue
        if value is None:
            word = opts.taken.get(position)
            if word is not None:  # the option's own value is only known at run time
                run.findings.append(_dynamic_code(word, how))
            continue
        prefix = (strip or {}).get(name)
        if prefix is not None:
            if not value.startswith(prefix):
                continue
            value = value[len(prefix):]
        _static_code(Arg(value, value), how, run)


def _rsync(args: list[Arg]) -> CodeRun:
    run = CodeRun()
    _option_code(rsync_options(args), {"--rsh": "rsync -e"}, run)
    return run


# GNU tar: short options that take a value, and the long ones (those that run a command first).
_TAR_CODE = {"--to-command": "tar --to-command", "--use-compress-program": "tar --use-compress-program",
             "--info-script": "tar --info-script", "--new-volume-script": "tar --new-volume-script",
             "--rsh-command": "tar --rsh-command", "--checkpoint-action": "tar --checkpoint-action"}
_TAR_LONGS = {name[2:]: VALUE for name in _TAR_CODE} | {name: VALUE for name in (
    "file", "directory", "exclude", "exclude-from", "files-from", "transform", "xform", "owner", "group", "mode",
    "mtime", "newer", "newer-mtime", "after-date", "listed-incremental", "label", "format", "blocking-factor",
    "suffix", "volno-file", "tape-length", "starting-file", "record-size", "quoting-style", "index-file",
    "strip-components", "sort", "warning", "level", "owner-map", "group-map")} | {
    name: OPTIONAL for name in ("checkpoint", "backup", "occurrence")}  # --NAME[=VALUE]


def _tar(args: list[Arg]) -> CodeRun:
    run = CodeRun()
    opts = options.parse(args, values="fCIFTXbgHKLNV", longs=_TAR_LONGS,
                         aliases={"-I": "--use-compress-program", "-F": "--info-script"})
    _option_code(opts, _TAR_CODE, run, strip={"--checkpoint-action": "exec="})
    return run


def _zip(args: list[Arg]) -> CodeRun:
    run = CodeRun()
    for index, arg in enumerate(args):
        text = arg.value or ""
        if text in ("-TT", "--unzip-command") and index + 1 < len(args):
            _static_code(args[index + 1], f"zip {text}", run)
        elif text.startswith("--unzip-command="):
            _static_code(Arg(text.split("=", 1)[1], text), "zip --unzip-command", run)
    return run


# GNU make: short options that take a value (-j, -l: an optional one), and the long ones.
_MAKE_LONGS = {"file": VALUE, "makefile": VALUE, "directory": VALUE, "include-dir": VALUE, "old-file": VALUE,
               "assume-old": VALUE, "new-file": VALUE, "assume-new": VALUE, "what-if": VALUE, "eval": VALUE,
               "jobs": OPTIONAL, "load-average": OPTIONAL, "max-load": OPTIONAL, "debug": OPTIONAL,
               "output-sync": OPTIONAL, "shuffle": OPTIONAL, "jobserver-style": VALUE}


def _make(args: list[Arg]) -> CodeRun:
    run = CodeRun()
    opts = options.parse(args, values="fCIoWE", optional="jlO", longs=_MAKE_LONGS,
                         aliases={"-f": "--file", "--makefile": "--file", "-E": "--eval"})
    if any(value in STDIN_PATHS for value in opts.values("--file")):
        run.stdin = "make"  # its recipes are shell code: read as shell, roughly
    _option_code(opts, {"--eval": "make --eval"}, run)
    return run
