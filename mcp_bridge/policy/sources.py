"""Code a command hands to a shell or an interpreter: where it comes from, and whether it can be read.

Shell code written into the command line is analysed like the rest of it: ``bash -c '...'``,
``eval 'literal'``, ``su -c``, ``ssh host '...'`` (another node: analysed afresh), ``trap '...'
EXIT``, ``alias x='...'``, ``script -c``, ``tmux new-session '...'``, ``at`` fed a here-document,
``echo '...' | sh``. Code only known at run time needs a confirm (``code-from-elsewhere``):
``curl ... | sh``, ``sh <(...)``, ``. /dev/stdin`` fed by a pipe, ``eval "$x"``, ``bash -c
"$(...)"``, ``python -c "$x"``, ``crontab`` installs.

Other languages are not analysed. Their inline code (``python -c``, ``perl -e``, ``node -e``,
an ``awk`` program, a ``sed`` script) passes unless it mentions what runs programs, deletes
files or touches devices (``os.system``, ``subprocess``, ``rmtree``, ``unlink``, ``/dev/``,
``system(``, sed's ``e``...), which needs a confirm: a heuristic, stated as such in the README.
Script *files* (``bash build.sh``, ``python x.py``, ``. venv/bin/activate``) are not read; the
policy judges the command line, as with ``make`` or ``pytest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mcp_bridge.policy import options
from mcp_bridge.policy.base import Finding, confirm
from mcp_bridge.policy.options import FLAG, VALUE
from mcp_bridge.policy.words import Arg, joined_code

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "lksh", "oksh", "pdksh", "ash", "yash", "posh",
                    "rbash", "fish", "csh", "tcsh"})
STDIN_PATHS = frozenset({"/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "/proc/thread-self/fd/0", "-"})
_PYTHON = re.compile(r"^(python|pypy)[0-9.]*$")
_RISKY = re.compile(
    r"\b(system|exec\w*|spawn\w*|popen\w*|subprocess|child_process|shell_exec|passthru|proc_open|fork|"
    r"kill\w*|rmtree|unlink\w*|rmdir|removedirs|remove|rm_rf|rm_r|rmSync|truncate|reboot|shutdown|poweroff|"
    r"pty|ctypes|eval|qx|getline|FileUtils)\b|`|%x|/dev/|sysrq|os\.execute|io\.popen", re.IGNORECASE)
_SED_EXEC = re.compile(r"(^|[;{}\n])\s*(\d+|\$|/[^/]*/)?\s*e(\s|;|$)|s(.).*\4.*\4[gpiImM0-9w]*e|\bw\s*/dev/")
_AWK_PIPE = re.compile(r"\|")


@dataclass
class CodeRun:
    scripts: list[tuple[Arg, str]] = field(default_factory=list)  # static shell code and what runs it
    positional: list[Arg] = field(default_factory=list)  # $0 $1 ... of a `sh -c` string
    fresh: bool = False  # runs on another machine (ssh)
    same_shell: bool = False  # eval: runs in this shell, its cd and variables last
    stdin: str = ""  # reads code from standard input: what reads it ("sh", "python", ...)
    stdin_is_shell: bool = True
    findings: list[Finding] = field(default_factory=list)
    argv: list[Arg] = field(default_factory=list)  # a command to analyse (hash -p PATH)
    files: list[Arg] = field(default_factory=list)  # script files it runs (not read, unless this command wrote them)


def _dynamic_code(arg: Arg, how: str) -> Finding:
    why = arg.why or f"'{arg.raw}' is only known at run time"
    return confirm("code-from-elsewhere", f"{how} runs code only known at run time: {why}")


def _script_file(arg: Arg, how: str, run: CodeRun) -> None:
    """A script operand: stdin, a process substitution, a run-time name, or a file (not read)."""
    if arg.value is None:
        if arg.raw.startswith(("<(", ">(")):
            run.findings.append(confirm("code-from-elsewhere", f"{how} runs the output of the process "
                                                               f"substitution {arg.raw[:60]} as code"))
        else:
            run.findings.append(_dynamic_code(arg, how))
    elif arg.value in STDIN_PATHS:
        run.stdin = how
    else:
        run.files.append(arg)


def _static_code(arg: Arg, how: str, run: CodeRun) -> None:
    if arg.value is None:
        run.findings.append(_dynamic_code(arg, how))
    else:
        run.scripts.append((arg, how))


def code_of(name: str, args: list[Arg]) -> CodeRun | None:
    """What code ``name args`` runs, if it is a shell, ``eval``, ``ssh``... or an interpreter."""
    if name in SHELLS:
        return _shell(name, args)
    if name == "eval":
        run = CodeRun(same_shell=True)
        if args:
            _static_code(joined_code(args), "eval", run)
        return run
    if name in ("source", "."):
        run = CodeRun()
        if args:
            _script_file(args[0], name, run)
        return run
    if name in ("su", "runuser", "script"):
        return _su_like(name, args)
    if name == "ssh":
        return _ssh(args)
    if name == "trap":
        operands = [a for a in args if a.value not in ("-p", "-l", "-P", "--")]
        run = CodeRun()
        if len(operands) >= 2 and operands[0].value not in ("-", ""):
            _static_code(operands[0], "trap", run)
        return run
    if name == "alias":
        run = CodeRun()
        for arg in args:
            if arg.value is None:
                run.findings.append(_dynamic_code(arg, "alias"))
            elif "=" in arg.value and not arg.value.startswith("-"):
                value = arg.value.split("=", 1)[1]
                run.scripts.append((Arg(value, value), f"alias {arg.value.split('=', 1)[0]}"))
        return run
    if name in ("at", "batch"):
        texts = [a.value or "" for a in args]
        if any(t in ("-l", "-d", "-r", "-c", "-V") or t.startswith("-f") for t in texts):
            return CodeRun()
        return CodeRun(stdin=name)
    if name == "crontab":
        texts = [a.value for a in args]
        if any(t in ("-l", "-r", "-e", "-V", "-T", "--help") for t in texts):
            return CodeRun()
        return CodeRun(findings=[confirm("code-from-elsewhere", "crontab installs commands that cron runs "
                                                                "later, which the policy cannot check")])
    if name == "hash":
        texts = [a.value for a in args]
        if "-p" in texts:
            index = texts.index("-p")
            if index + 1 < len(args):
                return CodeRun(argv=[args[index + 1]])
        return None
    if name == "enable" and any((a.value or "").startswith("-f") for a in args):
        return CodeRun(findings=[confirm("code-from-elsewhere", "enable -f loads a shell builtin from a "
                                                                "shared library")])
    if name == "tmux":
        return _tmux(args)
    return _interpreter(name, args)


def _shell(name: str, args: list[Arg]) -> CodeRun:
    run = CodeRun()
    index = 0
    command_mode = stdin_mode = False
    command_value: Arg | None = None
    while index < len(args):
        text = args[index].value
        if text is None:
            break
        if text in ("--", "-"):
            index += 1
            break
        if text.startswith("--"):
            if text.startswith("--command"):  # fish
                command_mode = True
                if "=" in text:
                    command_value = Arg(text.split("=", 1)[1], text)
            index += 2 if text in ("--rcfile", "--init-file", "--init-command") else 1
            continue
        if text[:1] in "-+" and len(text) > 1:
            letters = text[1:]
            command_mode |= text[0] == "-" and "c" in letters
            stdin_mode |= text[0] == "-" and "s" in letters
            index += 1 + sum(1 for letter in letters if letter in "oO")
            continue
        break
    operands = args[index:]
    if command_mode:
        code = command_value or (operands[0] if operands else None)
        if code is not None:
            _static_code(code, f"{name} -c", run)
            run.positional = list(operands[1:] if command_value is None else operands)
        return run
    if operands and not stdin_mode:
        _script_file(operands[0], name, run)
        return run
    run.stdin = name
    return run


def _su_like(name: str, args: list[Arg]) -> CodeRun:
    longs = {"command": VALUE, "session-command": VALUE, "shell": VALUE, "group": VALUE, "supp-group": VALUE,
             "whitelist-environment": VALUE, "login": FLAG, "preserve-environment": FLAG, "pty": FLAG,
             "help": FLAG, "version": FLAG, "quiet": FLAG, "append": FLAG, "flush": FLAG, "echo": VALUE,
             "log-in": VALUE, "log-out": VALUE, "log-io": VALUE, "log-timing": VALUE, "output-limit": VALUE,
             "timing": VALUE, "force": FLAG, "return": FLAG}
    values = "csgGw" if name != "script" else "cEIOBTo"
    opts = options.parse(args, flags="lmpPfqaeE", values=values, optional="t" if name == "script" else "",
                         longs=longs)
    run = CodeRun()
    if opts.has("--help", "--version"):
        return run
    codes = [(n, v) for n, v in opts.seen if n in ("-c", "--command", "--session-command")]
    if codes:
        option, value = codes[-1]
        code = Arg(value, value) if value is not None else next(
            (a for a in opts.dynamic), Arg(None, "", why="a command only known at run time"))
        _static_code(code, f"{name} {option}", run)
        return run
    run.stdin = name
    return run


_SSH_FLAGS = "46AaCfGgKkMNnqsTtVvXxYy"
_SSH_VALUES = "BbcDEeFIiJLlmOoPpQRSWw"


def _ssh(args: list[Arg]) -> CodeRun:
    opts = options.parse(args, flags=_SSH_FLAGS, values=_SSH_VALUES, permute=False)
    run = CodeRun(fresh=True)
    if not opts.operands:
        return run
    after_host = options.parse(opts.operands[1:], flags=_SSH_FLAGS, values=_SSH_VALUES, permute=False)
    if opts.has("-N", "-G", "-V", "-Q", "-O", "-W") or after_host.has("-N", "-G", "-V", "-Q", "-O", "-W"):
        return run  # ssh takes options after the host too (`ssh host -p 22 cmd`, `ssh host -- cmd`)
    command = after_host.operands
    if command:
        _static_code(joined_code(command), "ssh", run)
    elif not opts.has("-n"):
        run.stdin = "ssh"
    return run


_TMUX_COMMANDS = {"new-session": "censtxyfF", "new": "censtxyfF", "new-window": "censtF", "neww": "censtF",
                  "split-window": "celtF", "splitw": "celtF", "respawn-pane": "cet", "respawnp": "cet",
                  "respawn-window": "cet", "respawnw": "cet", "run-shell": "dtc", "run": "dtc",
                  "send-keys": "NtT", "send": "NtT"}
_TMUX_KEYS = {"Enter": "\n", "C-m": "\n", "C-j": "\n", "KPEnter": "\n", "Space": " "}


def _tmux(args: list[Arg]) -> CodeRun:
    run = CodeRun()
    index = 0
    while index < len(args) and (args[index].value or "").startswith("-"):
        index += 2 if args[index].value in ("-L", "-S", "-f", "-c", "-T") else 1
    if index >= len(args) or args[index].value not in _TMUX_COMMANDS:
        return run
    command = args[index].value or ""
    opts = options.parse(args[index + 1:], flags="dhPvlbEpZKMRlX", values=_TMUX_COMMANDS[command], permute=False)
    if not opts.operands:
        return run
    if command in ("send-keys", "send"):
        if all(a.value is not None for a in opts.operands):
            text = "".join(_TMUX_KEYS.get(a.value or "", a.value or "") for a in opts.operands)
            run.scripts.append((Arg(text, text), "tmux send-keys"))
        else:
            run.findings.append(_dynamic_code(next(a for a in opts.operands if a.value is None), "tmux send-keys"))
        return run
    _static_code(joined_code(opts.operands), f"tmux {command}", run)
    return run


_INLINE = {"perl": ("-e", "-E"), "ruby": ("-e",), "node": ("-e", "--eval", "-p", "--print"),
           "nodejs": ("-e", "--eval", "-p", "--print"), "bun": ("-e", "--eval", "-p", "--print"),
           "deno": ("eval",), "php": ("-r", "-B", "-R", "-E"), "lua": ("-e",), "luajit": ("-e",),
           "rscript": ("-e",), "osascript": ("-e",), "pwsh": ("-c", "-command"), "powershell": ("-c", "-command"),
           "expect": ("-c",), "tclsh": (), "wish": (), "julia": ("-e", "--eval")}
_INTERPRETER_VALUES = {"perl": "IMmdDlx", "ruby": "IrCEFKT", "node": "r", "nodejs": "r", "php": "cdfz",
                       "lua": "l", "python": "WXm"}


def _interpreter(name: str, args: list[Arg]) -> CodeRun | None:
    if name in ("awk", "gawk", "mawk", "nawk"):
        return _awk(args)
    if name in ("sed", "gsed"):
        return _sed(args)
    family = "python" if _PYTHON.match(name) else name
    if family not in _INLINE and family != "python":
        return None
    inline = ("-c",) if family == "python" else _INLINE[family]
    run = CodeRun(stdin_is_shell=False)
    values = _INTERPRETER_VALUES.get(family, "")
    index = 0
    codes: list[Arg] = []
    while index < len(args):
        text = args[index].value
        index += 1
        if text is None:
            break  # a script named at run time (or its arguments): a file, not read
        clustered = family == "python" and text.startswith("-") and not text.startswith("--") and "c" in text[1:]
        if text in inline or clustered:
            if index < len(args):
                codes.append(args[index])
            index += 1
            if family == "python":
                break  # what follows the code is its sys.argv
            continue
        if family == "python" and text.startswith("-m"):
            return run  # a module: its code is a file
        if text.startswith("-") and text != "-":
            if len(text) == 2 and text[1] in values:
                index += 1
            continue
        if codes:
            break  # input files of the inline code
        if text in STDIN_PATHS:
            run.stdin = name
        else:
            run.files.append(args[index - 1])
        return run  # the script file: not read
    if not codes:
        run.stdin = name
    for code in codes:
        if code.value is None:
            run.findings.append(_dynamic_code(code, name))
        else:
            risky_code(code.value, name, run)
    return run


def risky_code(code: str, name: str, run: CodeRun) -> None:
    match = _RISKY.search(code)
    if match:
        run.findings.append(confirm("code-from-elsewhere", f"{name} code that can run programs, delete files or "
                                                           f"write devices ('{match.group(0)}'), which the policy "
                                                           "does not analyse"))


def _awk(args: list[Arg]) -> CodeRun:
    run = CodeRun(stdin_is_shell=False)
    opts = options.parse(args, flags="bcCdDgMnNOPrStV", values="fFvEeilLp", longs={
        "file": VALUE, "field-separator": VALUE, "assign": VALUE, "source": VALUE, "exec": VALUE,
        "include": VALUE, "load": VALUE, "help": FLAG, "version": FLAG})
    programs = [v for n, v in opts.seen if n in ("-e", "--source")]
    if not opts.has("-f", "--file", "-E", "--exec") and opts.operands:
        first = opts.operands[0]
        if first.value is None:
            run.findings.append(_dynamic_code(first, "awk"))
            return run
        programs.append(first.value)
    for program in programs:
        if program is None:
            continue
        if _RISKY.search(program) or _AWK_PIPE.search(program):
            run.findings.append(confirm("code-from-elsewhere", "an awk program that runs commands (system() or a "
                                                               "pipe), which the policy does not analyse"))
            break
    return run


def _sed(args: list[Arg]) -> CodeRun:
    run = CodeRun(stdin_is_shell=False)
    opts = options.parse(args, flags="nErsuzb", values="efl", optional="i", longs={
        "expression": VALUE, "file": VALUE, "in-place": VALUE, "quiet": FLAG, "silent": FLAG, "regexp-extended": FLAG,
        "separate": FLAG, "sandbox": FLAG, "null-data": FLAG, "debug": FLAG, "posix": FLAG, "help": FLAG,
        "version": FLAG, "line-length": VALUE, "follow-symlinks": FLAG, "unbuffered": FLAG})
    if opts.has("--sandbox"):
        return run  # --sandbox refuses e, r and w
    scripts: list[str | None] = [v for n, v in opts.seen if n in ("-e", "--expression")]
    if not scripts and not opts.has("-f", "--file") and opts.operands:
        scripts.append(opts.operands[0].value)
    for script in scripts:
        if script is None:
            run.findings.append(confirm("code-from-elsewhere", "a sed script only known at run time (GNU sed's "
                                                               "e command runs programs)"))
        elif _SED_EXEC.search(script):
            run.findings.append(confirm("code-from-elsewhere", "a sed script that runs commands or writes a device "
                                                               "(the e command or flag, w /dev/...)"))
    return run
