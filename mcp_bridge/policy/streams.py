"""Redirections and pipes: what a command writes to, and what it reads on standard input.

Write targets are checked like any other file a command writes (a device, a power switch).
Standard input is followed so that a shell fed code can be judged on that code: a here-
document or here-string is text the command line shows; so is what ``echo``, ``printf`` or a
bare ``cat`` of a here-document writes into a pipe. Anything else a program writes into the
pipe (``curl``, ``base64 -d``) is unknown, which is what makes ``curl ... | sh`` a confirm.
Files written by the command are remembered: running one later in the same command
(``echo ... > x.sh; sh x.sh``) runs code the policy has not seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcp_bridge.policy import paths, sources, wrappers
from mcp_bridge.policy.base import Finding
from mcp_bridge.policy.rules import program_name
from mcp_bridge.policy.rules_disk import check_written
from mcp_bridge.policy.syntax import Command, Lit, Redir, Simple, Word
from mcp_bridge.policy.words import Arg, expand

if TYPE_CHECKING:
    from mcp_bridge.policy.analysis import State, Walk

WRITES = frozenset({">", ">>", ">|", "&>", "&>>", "<>", ">&"})
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])?(\+?)=")
_PRINTF_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|0[0-7]{0,3}|.)", re.DOTALL)
_PRINTF_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "\\": "\\",
                  '"': '"', "'": "'"}
_PRINTF_DIRECTIVE = re.compile(r"%[-+ #0-9.]*([a-zA-Z%])")


@dataclass
class Input:
    """What a command reads on standard input, as far as the command line shows it."""

    kind: str  # "known" (text), "unknown" (how), "file" (a script file: not read)
    text: str = ""
    how: str = ""
    key: str = ""  # for "file": its place, to see whether this command wrote it


def is_assignment(word: Word) -> bool:
    first = word.parts[0] if word.parts else None
    return isinstance(first, Lit) and not first.quoted and ASSIGNMENT.match(first.text) is not None


class Context:
    """A rule context for redirections and tools (see :class:`mcp_bridge.policy.base.Context`)."""

    def __init__(self, walk: Walk, cwd: paths.Cwd) -> None:
        self.walk = walk
        self.cwd = cwd

    def place(self, text: str, follow_last: bool = True) -> paths.Place:
        return paths.resolve(text, self.cwd, self.walk.links, follow_last)

    def nested_argv(self, argv: list[Arg], skip_rules: bool = False) -> None:  # pragma: no cover - unused here
        raise NotImplementedError


def note_written(walk: Walk, cwd: paths.Cwd, arg: Arg) -> None:
    if arg.value is not None and not arg.glob:
        walk.written.add(paths.place_key(paths.resolve(arg.value, cwd, walk.links)))


def written_by_command(walk: Walk, cwd: paths.Cwd, text: str) -> bool:
    return paths.place_key(paths.resolve(text, cwd, walk.links)) in walk.written


def redirections(walk: Walk, redirs: list[Redir], state: State, findings: list[Finding],
                 stdin: Input | None) -> Input | None:
    context = Context(walk, state.cwd)
    for redir in redirs:
        target = expand(redir.target, state.env) if redir.target is not None else []
        if redir.op in ("<<", "<<-") and redir.heredoc is not None:
            stdin = Input("known", redir.heredoc.body)
        elif redir.op == "<<<":
            value = target[0].value if len(target) == 1 else None
            stdin = Input("known", value + "\n") if value is not None else Input(
                "unknown", how="a here-string only known at run time")
        elif redir.op == "<" and target:
            arg = target[0]
            if arg.value is None:
                kind = "a process substitution" if arg.raw.startswith("<(") else "a file"
                stdin = Input("unknown", how=f"{kind} only known at run time ({arg.raw[:60]})")
            elif arg.value not in sources.STDIN_PATHS:
                stdin = Input("file", how=arg.value, key=paths.place_key(context.place(arg.value)))
        elif redir.op == "<&" and target and target[0].value != "0":
            stdin = None if target[0].value == "-" else Input("unknown", how="another file descriptor")
        if redir.op in WRITES and target:
            if redir.op == ">&" and target[0].value is not None and re.fullmatch(r"\d+-?|-", target[0].value):
                continue
            for arg in target:
                finding = check_written(arg, context, f"'{redir.op}'")
                if finding is not None:
                    findings.append(finding)
                note_written(walk, state.cwd, arg)
    return stdin


def output_of(walk: Walk, command: Command, state: State, stdin: Input | None) -> Input:
    """What ``command`` writes into the pipe after it, when the command line shows it."""
    if not isinstance(command, Simple):
        return Input("unknown", how="the output of a compound command")
    words = [w for w in command.words if not is_assignment(w)]
    argv = [a for w in words for a in expand(w, state.env)]
    for _ in range(8):
        if not argv or argv[0].value is None:
            break
        unwrapped = wrappers.unwrap(program_name(argv[0].value), argv[1:])
        if unwrapped is None or not unwrapped.argv:
            break
        argv = unwrapped.argv
    if not argv or argv[0].value is None:
        return Input("unknown", how="the output of a command only known at run time")
    name = program_name(argv[0].value)
    if any(a.value is None for a in argv[1:]):
        return Input("unknown", how=f"the output of `{name}` with arguments only known at run time")
    values = [a.value or "" for a in argv[1:]]
    if name == "echo":
        while values and re.fullmatch(r"-[neE]+", values[0]):
            values = values[1:]
        text = " ".join(values)
        if "\\" in text:
            return Input("unknown", how="echo output with backslash escapes (shells differ on them)")
        return Input("known", text + "\n")
    if name == "printf" and values:
        return Input("known", printf(values[0], values[1:]))
    if name == "cat":
        operands = [v for v in values if not v.startswith("-") or v == "-"]
        if not operands or operands == ["-"]:
            own = redirections(walk, command.redirs, state, [], stdin)
            return own if own is not None else Input("known", "")
        context = Context(walk, state.cwd)
        return Input("file", how=" ".join(operands), key=paths.place_key(context.place(operands[0])))
    return Input("unknown", how=f"the output of `{name}`")


def printf(template: str, args: list[str]) -> str:
    """What ``printf TEMPLATE ARGS...`` prints, for the directives that matter here."""

    def unescape(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            code = match.group(1)
            if code[0] == "x":
                return chr(int(code[1:], 16))
            if code[0] == "0":
                return chr(int(code, 8))
            return _PRINTF_SIMPLE.get(code, "\\" + code)

        return _PRINTF_ESCAPE.sub(one, text)

    template = unescape(template)
    pending = list(args)
    out: list[str] = []

    def directive(match: re.Match[str]) -> str:
        if match.group(1) == "%":
            return "%"
        value = pending.pop(0) if pending else ""
        return unescape(value) if match.group(1) == "b" else value

    for _ in range(16):  # printf reuses its template while arguments remain
        out.append(_PRINTF_DIRECTIVE.sub(directive, template))
        if not pending or not _PRINTF_DIRECTIVE.search(template):
            break
    return "".join(out)
