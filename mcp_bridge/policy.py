"""Which commands the bridge refuses to run: a policy that parses the shell instead of grepping it.

A command line is split into simple commands the way a POSIX shell would (quotes, escapes,
``; && || | & newline``, redirections, here-documents, ``$(...)`` and backticks), wrappers
such as ``sudo``, ``env VAR=x``, ``nice``, ``nohup``, ``timeout N``, ``chroot DIR``, ``flock FILE``,
``runuser -u USER``, ``nsenter``, ``unshare``, ``taskset``, ``chrt`` and ``watch`` are peeled off, and
strings run by another shell (``bash -c '...'``, ``sh -c``, ``su -c``, ``eval``, a script echoed,
here-doc'ed or ``cat <<EOF``'ed into ``bash``) are checked recursively. A ``cd`` or ``pushd`` is
followed to later commands, but not out of a ``( ... )`` subshell, a ``$(...)`` or a pipeline.
Rules then look at programs and their arguments, never at substrings, so ``grep reboot log.txt`` and ``rm -rf /tmp/x``
pass while ``sudo bash -c "rm -fr /"`` does not.

The lexer is our own rather than :mod:`shlex`: shlex cannot tell a quoted ``';'`` or ``'>'``
from a real operator, and it knows nothing of here-documents or ``$(...)``.

Built-in deny rules (ids are stable; policy files and audit entries refer to them):

``rm-root``               ``rm -r`` of ``/`` (also ``//``, ``/.``, ``/tmp/..``) or any ``rm`` of ``/*``
``rm-home``               ``rm -r`` of ``~`` / ``$HOME`` itself, or any ``rm`` of ``~/*``
``rm-system-dir``         ``rm -r`` of a top-level system directory (``/etc``, ``/usr``...) or any
                          ``rm`` of a glob of one (``/usr/*``); deeper paths (``/var/tmp/x``) pass
``disk-format``           ``mkfs``, ``mkfs.*``, ``mke2fs``, ``wipefs -a``, ``diskutil eraseDisk``...
``dd-block-device``       ``dd of=/dev/sda`` and other block devices
``redirect-block-device`` ``> /dev/sda``, ``>> /dev/nvme0n1``, ``tee /dev/vda``...
``fork-bomb``             a function that calls itself in a pipe or in the background
``power-state``           ``shutdown``, ``reboot``, ``halt``, ``poweroff``, ``init 0|6``,
                          ``systemctl poweroff|reboot|halt``, writes to /proc/sysrq-trigger
``unparseable``           the line cannot be parsed (unbalanced quotes, ``$(`` without ``)``)

Decisions worth knowing:

* ``rm`` needs only *recursive*, not *force*, to be refused on those targets: commands run on
  the nodes without a terminal, where ``rm -r /etc`` prompts for nothing and removes as much
  as ``rm -rf /etc``.
* A variable other than ``$HOME`` in an ``rm`` target (``rm -rf "$DIR"/*``) cannot be known
  statically and is allowed; ``cd /`` earlier in the same line *is* followed, so
  ``cd / && rm -rf *`` is refused.

Policy file (YAML), all keys optional::

    deny:
      - id: no-apt-remove
        reason: packages are managed by the role
        argv0: apt*                  # program name (basename or full path), glob
        args_regex: '\\b(remove|purge)\\b'  # re.search over the arguments joined by spaces
    allow:
      - id: lab-reboot
        reason: lab nodes may be rebooted
        regex: '^reboot$'            # re.search over the simple command's joined text

A rule has ``id``, ``reason`` and exactly one of ``argv0`` (with optional ``args_regex``) or
``regex``. Rules are tested against each simple command, at each wrapper level (``sudo
reboot`` is seen as ``sudo reboot`` and as ``reboot``). User deny rules add to the built-ins
and always win. An allow rule overrides built-in rules only for the simple command it
matches: allowing ``reboot`` does not allow ``reboot; rm -rf /``, nor anything inside a
``bash -c`` it matches.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mcp_bridge.errors import JexidaError

__all__ = ["BUILTIN_RULES", "CommandPolicy", "PolicyDecision", "PolicyError", "PolicyRule"]

# Stable ids of the built-in rules, with what each protects against.
BUILTIN_RULES: dict[str, str] = {
    "rm-root": "recursive removal of the filesystem root",
    "rm-home": "recursive removal of a whole home directory",
    "rm-system-dir": "recursive removal of a top-level system directory",
    "disk-format": "formatting or wiping a disk",
    "dd-block-device": "dd writing onto a block device",
    "redirect-block-device": "output written onto a block device",
    "fork-bomb": "a self-replicating function (fork bomb)",
    "power-state": "shutting down or rebooting the node",
    "unparseable": "a command line the policy cannot parse",
}

_OVERRIDE_HINT = "If it is really intended, add an allow rule matching exactly this command to the policy file."
# A nested shell string inside a nested shell string ... beyond this is refused, not followed.
_MAX_DEPTH = 8


class PolicyError(JexidaError):
    """A policy file that cannot be used; the message names the file and the field."""


@dataclass
class PolicyDecision:
    allowed: bool
    rule: str | None
    reason: str

    @property
    def decision(self) -> str:  # the three-outcome interface of the policy being rewritten
        return "allow" if self.allowed else "deny"

    def to_dict(self, command: str) -> dict[str, Any]:
        return {"command": command, "decision": self.decision, "rule": self.rule, "reason": self.reason}


# --------------------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------------------


class _Unparseable(Exception):
    """The text is not valid shell as far as the policy can tell."""


@dataclass
class _Word:
    text: str  # the value after quote removal; $VAR and $(...) are kept verbatim
    substitutions: list[str] = field(default_factory=list)  # command strings run to build it
    quoted: bool = False


@dataclass
class _Op:
    op: str


@dataclass
class _Redir:
    op: str
    fd: str | None
    target: _Word
    body: str | None = None  # here-document text
    body_substitutions: list[str] = field(default_factory=list)


_Token = _Word | _Op | _Redir

# Longest first, so that "&&" is not read as "&" "&".
_CONTROL_OPS = (";;&", ";;", ";&", "&&", "||", "|&", ";", "&", "|", "(", ")", "\n")
_REDIR_RE = re.compile(r"(\d+)?(<<<|<<-|&>>|<<|<>|<&|>>|>\||>&|&>|<|>)")
_WORD_BREAK = frozenset(" \t\r\n;&|()<>")
_ANSI_C_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b",
    "f": "\f", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?",
}
_ANSI_C_RE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", re.DOTALL)


def _decode_ansi_c(raw: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] == "x":
            return chr(int(code[1:], 16))
        if code[0] in "01234567":
            return chr(int(code, 8))
        return _ANSI_C_ESCAPES.get(code, "\\" + code)

    return _ANSI_C_RE.sub(one, raw)


class _Lexer:
    """Turns shell text into words, control operators and redirections.

    With ``until_paren`` it stops at the ``)`` closing a ``$(`` that began just before
    ``start``, which is how command substitutions find their end through nested quotes.
    """

    def __init__(self, text: str, start: int = 0, until_paren: bool = False) -> None:
        self.text = text
        self.pos = start
        self.until_paren = until_paren
        self.tokens: list[_Token] = []
        self._pending_heredocs: list[_Redir] = []
        self._paren_depth = 0
        self._quoted = False

    def run(self) -> list[_Token]:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r":
                self.pos += 1
            elif char == "\\" and text.startswith("\n", self.pos + 1):
                self.pos += 2  # line continuation
            elif char == "#":
                newline = text.find("\n", self.pos)
                self.pos = len(text) if newline < 0 else newline
            elif char in "<>" and text.startswith("(", self.pos + 1):
                self.tokens.append(self._read_word())  # process substitution <(...) >(...)
            elif (redir := self._read_redirection()) is not None:
                self.tokens.append(redir)
            elif char in ";&|()\n":
                op = next(o for o in _CONTROL_OPS if text.startswith(o, self.pos))
                if op == ")":
                    if self.until_paren and self._paren_depth == 0:
                        return self.tokens
                    self._paren_depth -= 1
                elif op == "(":
                    self._paren_depth += 1
                self.pos += len(op)
                self.tokens.append(_Op(op))
                if op == "\n":
                    self._read_heredocs()
            else:
                self.tokens.append(self._read_word())
        if self.until_paren:
            raise _Unparseable("a '$(' or '<(' is never closed with ')'")
        self._read_heredocs()
        return self.tokens

    def _read_redirection(self) -> _Redir | None:
        match = _REDIR_RE.match(self.text, self.pos)
        if match is None:
            return None
        fd, op = match.group(1), match.group(2)
        self.pos = match.end()
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1
        at_end = self.pos >= len(self.text)
        process_subst = not at_end and self.text[self.pos] in "<>" and self.text.startswith("(", self.pos + 1)
        if at_end or (self.text[self.pos] in _WORD_BREAK and not process_subst):
            raise _Unparseable(f"the redirection '{op}' has no target")
        redir = _Redir(op=op, fd=fd, target=self._read_word())
        if op in ("<<", "<<-"):
            self._pending_heredocs.append(redir)
        return redir

    def _read_heredocs(self) -> None:
        """Here-document bodies start on the line after their operator: data, not commands."""
        text = self.text
        for redir in self._pending_heredocs:
            delimiter = redir.target.text
            lines: list[str] = []
            while self.pos < len(text):
                newline = text.find("\n", self.pos)
                end = len(text) if newline < 0 else newline
                line = text[self.pos:end]
                self.pos = end + 1 if newline >= 0 else end
                if (line.lstrip("\t") if redir.op == "<<-" else line) == delimiter:
                    break
                lines.append(line)
            redir.body = "\n".join(lines)
            if not redir.target.quoted:  # an unquoted delimiter means $(...) in the body runs
                redir.body_substitutions = _substitutions_in_text(redir.body)
        self._pending_heredocs = []

    def _read_word(self) -> _Word:
        text = self.text
        buf: list[str] = []
        subs: list[str] = []
        self._quoted = False
        while self.pos < len(text):
            char = text[self.pos]
            if char in "<>" and not buf and text.startswith("(", self.pos + 1):
                end = _closing_paren(text, self.pos + 2)
                subs.append(text[self.pos + 2:end])
                buf.append(text[self.pos:end + 1])
                self.pos = end + 1
            elif char in _WORD_BREAK:
                break
            elif char == "\\":
                if text.startswith("\n", self.pos + 1):
                    self.pos += 2
                    continue
                buf.append(text[self.pos + 1:self.pos + 2])
                self._quoted = True
                self.pos += 2
            elif char == "'":
                end = text.find("'", self.pos + 1)
                if end < 0:
                    raise _Unparseable(f"the single quote at character {self.pos + 1} is never closed")
                buf.append(text[self.pos + 1:end])
                self._quoted = True
                self.pos = end + 1
            elif char == '"':
                self.pos += 1
                self._read_double_quoted(buf, subs)
                self._quoted = True
            elif char == "$":
                self._read_dollar(buf, subs, in_double_quotes=False)
            elif char == "`":
                self._read_backtick(buf, subs)
            else:
                buf.append(char)
                self.pos += 1
        return _Word("".join(buf), subs, self._quoted)

    def _read_double_quoted(self, buf: list[str], subs: list[str], terminated: bool = True) -> None:
        text = self.text
        opened_at = self.pos
        while self.pos < len(text):
            char = text[self.pos]
            if terminated and char == '"':
                self.pos += 1
                return
            if char == "\\" and self.pos + 1 < len(text) and text[self.pos + 1] in '$`"\\\n':
                if text[self.pos + 1] != "\n":
                    buf.append(text[self.pos + 1])
                self.pos += 2
            elif char == "$":
                self._read_dollar(buf, subs, in_double_quotes=True)
            elif char == "`":
                self._read_backtick(buf, subs)
            else:
                buf.append(char)
                self.pos += 1
        if terminated:
            raise _Unparseable(f"the double quote at character {opened_at} is never closed")

    def _read_dollar(self, buf: list[str], subs: list[str], *, in_double_quotes: bool) -> None:
        text = self.text
        start = self.pos
        following = text[start + 1:start + 2]
        if following == "(":
            end = _closing_paren(text, start + 2)
            if text.startswith("((", start + 1) and _closing_paren(text, start + 3) + 1 == end:
                # $(( ... )) is arithmetic, not a command, but substitutions inside it still run
                subs.extend(_substitutions_in_text(text[start + 3:end - 1]))
            else:  # $(cmd), or $( (cmd) ) written without the space
                subs.append(text[start + 2:end])
            buf.append(text[start:end + 1])
            self.pos = end + 1
        elif following == "{":
            end = _closing_brace(text, start + 2, in_double_quotes)
            buf.append(text[start:end + 1])
            subs.extend(_substitutions_in_text(text[start + 2:end], as_words=not in_double_quotes))
            self.pos = end + 1
        elif following == "'" and not in_double_quotes:
            index = start + 2
            while index < len(text) and text[index] != "'":
                index += 2 if text[index] == "\\" else 1
            if index >= len(text):
                raise _Unparseable(f"the $' quote at character {start + 1} is never closed")
            buf.append(_decode_ansi_c(text[start + 2:index]))
            self._quoted = True
            self.pos = index + 1
        elif following == '"' and not in_double_quotes:
            self.pos = start + 2  # $"..." is a translatable double-quoted string
            self._read_double_quoted(buf, subs)
            self._quoted = True
        else:
            buf.append("$")
            self.pos = start + 1

    def _read_backtick(self, buf: list[str], subs: list[str]) -> None:
        text = self.text
        index = self.pos + 1
        while index < len(text) and text[index] != "`":
            index += 2 if text[index] == "\\" else 1
        if index >= len(text):
            raise _Unparseable(f"the backtick at character {self.pos + 1} is never closed")
        subs.append(re.sub(r"\\([$`\\])", r"\1", text[self.pos + 1:index]))
        buf.append(text[self.pos:index + 1])
        self.pos = index + 1


def _closing_paren(text: str, start: int) -> int:
    """Index of the ``)`` closing a ``(`` opened just before ``start``."""
    lexer = _Lexer(text, start, until_paren=True)
    lexer.run()
    return lexer.pos


def _closing_brace(text: str, start: int, in_double_quotes: bool) -> int:
    """Index of the ``}`` closing a ``${`` opened just before ``start``."""
    depth = 1
    index = start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "'" and not in_double_quotes:
            close = text.find("'", index + 1)
            if close < 0:
                break
            index = close + 1
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    raise _Unparseable(f"the '${{' at character {start - 1} is never closed with '}}'")


def _substitutions_in_text(text: str, as_words: bool = False) -> list[str]:
    """Command strings inside text that the shell expands (a here-doc body, a ${...})."""
    lexer = _Lexer(text)
    buf: list[str] = []
    subs: list[str] = []
    try:
        if as_words:
            for token in lexer.run():
                if isinstance(token, _Word):
                    subs.extend(token.substitutions)
        else:
            lexer._read_double_quoted(buf, subs, terminated=False)
    except _Unparseable:
        pass  # keep what was found before the text stopped making sense
    return subs


# --------------------------------------------------------------------------------------
# Parser: tokens -> pipelines of simple commands, plus function definitions
# --------------------------------------------------------------------------------------


@dataclass
class _Simple:
    words: list[_Word] = field(default_factory=list)
    redirs: list[_Redir] = field(default_factory=list)
    opens: int = 0  # `(` subshell groups that begin just before this command
    closes: int = 0  # `)` that end just after it


@dataclass
class _Function:
    name: str
    body_commands: list[list[str]]  # argv of each simple command in the body
    body_ops: set[str]
    text: str  # the definition, re-assembled from its tokens, for messages and rules


@dataclass
class _Parsed:
    pipelines: list[list[_Simple]]
    functions: list[_Function]


_PIPE_OPS = frozenset({"|", "|&"})
# Reserved words that may precede a command; they are not programs.
_LEADING_RESERVED = frozenset(
    {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "}", "fi", "done", "esac", "coproc"}
)
# Simple commands starting with these are syntax (loop headers, case subjects), not programs.
_HEADER_RESERVED = frozenset({"for", "select", "case", "function", "in"})


def _parse(tokens: list[_Token]) -> _Parsed:
    functions, header_indexes = _find_functions(tokens)
    pipelines: list[list[_Simple]] = []
    pipeline: list[_Simple] = []
    current = _Simple()
    last: _Simple | None = None
    pending_opens = 0
    for index, token in enumerate(tokens):
        if index in header_indexes:
            continue
        if isinstance(token, _Word):
            current.words.append(token)
        elif isinstance(token, _Redir):
            current.redirs.append(token)
        else:
            if current.words or current.redirs:
                current.opens, pending_opens = pending_opens, 0
                pipeline.append(current)
                last = current
            current = _Simple()
            if token.op == "(":
                pending_opens += 1
            elif token.op == ")":
                if pending_opens:  # `()` with nothing inside: a function header
                    pending_opens -= 1
                elif last is not None:
                    last.closes += 1
            if token.op not in _PIPE_OPS and pipeline:
                pipelines.append(pipeline)
                pipeline = []
    if current.words or current.redirs:
        current.opens = pending_opens
        pipeline.append(current)
    if pipeline:
        pipelines.append(pipeline)
    return _Parsed(pipelines, functions)


def _find_functions(tokens: list[_Token]) -> tuple[list[_Function], set[int]]:
    """``name() { ...; }`` and ``function name { ...; }`` definitions, and their header tokens."""
    functions: list[_Function] = []
    headers: set[int] = set()
    for index, token in enumerate(tokens):
        if not isinstance(token, _Word):
            continue
        previous = tokens[index - 1] if index else None
        at_command_start = previous is None or isinstance(previous, _Op) or (
            isinstance(previous, _Word) and previous.text in _LEADING_RESERVED
        )
        following = tokens[index + 1:index + 3]
        has_parens = [t.op for t in following if isinstance(t, _Op)] == ["(", ")"]
        if token.text == "function" and not token.quoted and at_command_start and index + 1 < len(tokens):
            name_token = tokens[index + 1]
            if not isinstance(name_token, _Word):
                continue
            body_start = index + 2
            after_name = tokens[index + 2:index + 4]
            if [t.op for t in after_name if isinstance(t, _Op)] == ["(", ")"]:
                body_start += 2
            headers.update({index, index + 1})
            functions.append(_function(name_token.text, tokens, body_start))
        elif at_command_start and has_parens and index not in headers:
            headers.add(index)
            functions.append(_function(token.text, tokens, index + 3))
    return functions, headers


def _function(name: str, tokens: list[_Token], start: int) -> _Function:
    while start < len(tokens) and isinstance(op := tokens[start], _Op) and op.op == "\n":
        start += 1
    opener = tokens[start] if start < len(tokens) else None
    end = len(tokens)
    depth = 0
    for index in range(start, len(tokens)):
        token = tokens[index]
        if isinstance(opener, _Word) and isinstance(token, _Word) and token.text in ("{", "}"):
            depth += 1 if token.text == "{" else -1
        elif isinstance(opener, _Op) and isinstance(token, _Op) and token.op in ("(", ")"):
            depth += 1 if token.op == "(" else -1
        if depth == 0:  # the closing brace, or the single command when the body is no group
            end = index + 1
            break
    body = tokens[start:end]
    parsed = _parse(body)
    commands = [_command_words(simple.words) for pipeline in parsed.pipelines for simple in pipeline]
    ops = {token.op for token in body if isinstance(token, _Op)}
    text = f"{name}() " + " ".join(_render(token) for token in body)
    return _Function(name, [c for c in commands if c], ops, text)


def _render(token: _Token) -> str:
    if isinstance(token, _Word):
        return token.text
    if isinstance(token, _Op):
        return token.op.replace("\n", ";")
    return f"{token.fd or ''}{token.op} {token.target.text}"


def _command_words(words: Sequence[_Word]) -> list[str]:
    """The argv a simple command runs: reserved words and leading VAR=value assignments dropped."""
    index = 0
    while index < len(words) and not words[index].quoted and words[index].text in _LEADING_RESERVED:
        index += 1
        if words[index - 1].text == "coproc" and index + 1 < len(words) and words[index + 1].text == "{":
            index += 1  # `coproc NAME { ...; }`: NAME is no program
    argv = [word.text for word in words[index:]]
    if argv and not words[index].quoted and argv[0] in _HEADER_RESERVED:
        return []
    while argv and _ASSIGNMENT_RE.match(argv[0]):
        argv = argv[1:]
    return argv


_ASSIGNMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")


# --------------------------------------------------------------------------------------
# Wrappers and nested shells
# --------------------------------------------------------------------------------------

_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh"})


def _program(argv0: str) -> str:
    return posixpath.basename(argv0)


def _after_options(
    args: Sequence[str],
    short_with_value: str = "",
    long_with_value: Iterable[str] = (),
    short_optional_value: str = "",
) -> tuple[list[str], list[str]]:
    """Split ``args`` at the first operand: (options seen, the rest). Handles ``-uroot``,
    ``-u root``, ``--user=root``, ``--user root`` and ``--``. Letters in
    ``short_optional_value`` take a value only when it is attached (``-m/proc/1/ns/mnt``)."""
    long_values = set(long_with_value)
    seen: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            return seen, list(args[index + 1:])
        if not arg.startswith("-") or arg == "-":
            break
        seen.append(arg)
        if arg.startswith("--"):
            if "=" not in arg and arg[2:] in long_values:
                index += 1
        else:
            for position, letter in enumerate(arg[1:], start=1):
                if letter in short_optional_value:
                    break
                if letter in short_with_value:
                    if position == len(arg) - 1:
                        index += 1  # the value is the next argument
                    break
        index += 1
    return seen, list(args[index:])


def _unwrap_once(argv: list[str]) -> list[str] | None:
    """The command a wrapper (sudo, env, nice, ...) runs, or None when argv is no wrapper."""
    name = _program(argv[0])
    args = argv[1:]
    rest: list[str]
    if name in ("sudo", "doas"):
        _, rest = _after_options(args, "ugpCDrtTUR", {"user", "group", "prompt", "close-from", "host", "chdir",
                                                       "role", "type", "command-timeout", "other-user", "chroot"})
    elif name == "env":
        rest = _env_command(args)
    elif name == "nice":
        _, rest = _after_options(args, "n", {"adjustment"})  # `-10` passes as a flag
    elif name == "ionice":
        _, rest = _after_options(args, "cnp", {"class", "classdata", "pid"})
    elif name == "timeout":
        _, rest = _after_options(args, "sk", {"signal", "kill-after"})
        rest = rest[1:]  # the duration
    elif name == "stdbuf":
        _, rest = _after_options(args, "ioe", {"input", "output", "error"})
    elif name in ("nohup", "builtin", "setsid", "busybox", "exec", "time"):
        _, rest = _after_options(args, "a" if name == "exec" else "")
    elif name == "command":
        seen, rest = _after_options(args)
        if any("v" in option or "V" in option for option in seen):
            return None  # `command -v rm` looks a program up, it runs nothing
    elif name == "chroot":  # chroot [options] NEWROOT [command]
        _, rest = _after_options(args, "", {"userspec", "groups"})
        rest = rest[1:]
    elif name == "runuser":
        seen, rest = _after_options(args, "ugGcsw", {"user", "group", "supp-group", "command", "shell",
                                                      "session-command", "whitelist-environment"})
        if not any(o in ("-u", "--user") or o.startswith("--user=") or (o[1] != "-" and "u" in o) for o in seen):
            return None  # the su-like form, `runuser USER -c CMD`, is a nested shell string
    elif name == "flock":  # flock [options] FILE command..., or FILE -c string
        _, rest = _after_options(args, "wE", {"timeout", "wait", "conflict-exit-code"})
        rest = rest[1:]
        if rest[:1] in (["-c"], ["--command"]):
            rest = ["sh", "-c", *rest[1:2]]
    elif name == "nsenter":
        _, rest = _after_options(args, "tSG", {"target", "setuid", "setgid", "user-parent"}, "muinpCUTrwW")
    elif name == "unshare":
        _, rest = _after_options(args, "RwSGl", {"root", "wd", "setuid", "setgid", "propagation", "setgroups",
                                                  "map-user", "map-group", "map-users", "map-groups", "load-interp"})
    elif name in ("taskset", "chrt"):  # taskset [options] MASK command, chrt [options] PRIO command
        seen, rest = _after_options(args, "TPD" if name == "chrt" else "",
                                    {"sched-runtime", "sched-period", "sched-deadline"})
        if any(o == "--pid" or (o[1] != "-" and "p" in o) for o in seen):
            return None  # acts on a running process
        if name == "taskset" or (rest and rest[0].isdigit()):
            rest = rest[1:]
    elif name == "watch":
        seen, rest = _after_options(args, "nq", {"interval", "equexit"})
        if rest and not any(o == "--exec" or (o[1] != "-" and "x" in o) for o in seen):
            rest = ["sh", "-c", " ".join(rest)]  # without --exec, watch hands the words to sh -c
    elif name == "xargs":
        _, rest = _after_options(args, "aEdILnPs", {"arg-file", "eof", "delimiter", "replace", "max-lines",
                                                      "max-args", "max-procs", "max-chars", "process-slot-var"})
    else:
        return None
    return rest or None


def _env_command(args: list[str]) -> list[str]:
    """The command ``env [options] [VAR=value]... command`` runs, ``-S 'string'`` split in."""
    split_strings: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            index += 1
            break
        if arg in ("-S", "--split-string"):
            split_strings.append(args[index + 1] if index + 1 < len(args) else "")
            index += 2
        elif arg.startswith(("--split-string=", "-S")):
            split_strings.append(arg.split("=", 1)[1] if arg.startswith("--") else arg[2:])
            index += 1
        elif arg in ("-u", "--unset", "-C", "--chdir"):
            index += 2
        elif arg.startswith("-"):
            index += 1
        else:
            break
    rest = args[index:]
    while rest and _ASSIGNMENT_RE.match(rest[0]):
        rest = rest[1:]
    for string in reversed(split_strings):
        try:
            rest = [*shlex.split(string), *rest]
        except ValueError:
            rest = [*string.split(), *rest]
    return rest


def _unwrap(argv: list[str]) -> list[list[str]]:
    """The wrapper chain, outermost first: ``sudo nice rm -rf /`` gives three levels."""
    levels = [argv]
    while len(levels) < 16:
        inner = _unwrap_once(levels[-1])
        if inner is None:
            break
        levels.append(inner)
    return levels


def _shell_script(argv: list[str]) -> tuple[bool, str | None]:
    """For a shell argv: (reads its script from stdin, the -c string if any)."""
    args = argv[1:]
    index = 0
    command_flag = False
    reads_stdin = False
    while index < len(args):
        arg = args[index]
        if arg in ("--", "-"):
            index += 1
            break
        if arg.startswith("--"):
            index += 2 if arg in ("--rcfile", "--init-file") else 1
            continue
        if arg[:1] in "-+" and len(arg) > 1:
            command_flag |= arg[0] == "-" and "c" in arg
            reads_stdin |= arg[0] == "-" and "s" in arg
            index += 2 if ("o" in arg or "O" in arg) else 1
            continue
        break
    operands = args[index:]
    if command_flag:
        return False, operands[0] if operands else None
    return (not operands or reads_stdin), None


def _echoed_text(argv: list[str]) -> str | None:
    """What ``echo ...`` or ``printf ...`` writes, for ``echo 'rm -rf /' | sh``."""
    name = _program(argv[0])
    if name not in ("echo", "printf"):
        return None
    args = argv[1:]
    if name == "echo":
        while args and re.fullmatch(r"-[neE]+", args[0]):
            args = args[1:]
    return " ".join(args).replace("\\n", "\n")


def _piped_text(simple: _Simple) -> str | None:
    """Text a command writes into a pipe, when the command line shows it: ``echo``/``printf``
    arguments, or the here-document / here-string of a ``cat`` without file operands."""
    argv = _command_words(simple.words)
    if not argv:
        return None
    inner = _unwrap(argv)[-1]
    echoed = _echoed_text(inner)
    if echoed is not None or _program(inner[0]) != "cat":
        return echoed
    _, operands = _after_options(inner[1:])
    if operands not in ([], ["-"]):
        return None  # cat of a file: its content is not in the command line
    texts = [redir.body for redir in simple.redirs if redir.body is not None]
    texts += [redir.target.text for redir in simple.redirs if redir.op == "<<<"]
    return "\n".join(texts) or None


def _nested_scripts(argv: list[str], simple: _Simple, piped: str | None) -> list[str]:
    """Shell text this command hands to another shell to run (``piped``: what the previous
    command of the pipeline writes into it, if known)."""
    name = _program(argv[0])
    if name in _SHELLS:
        from_stdin, string = _shell_script(argv)
        if string is not None:
            return [string]
        if not from_stdin:
            return []  # `bash script.sh`: the script's content is not in the command line
        scripts = [redir.body for redir in simple.redirs if redir.body is not None]
        scripts += [redir.target.text for redir in simple.redirs if redir.op == "<<<"]
        return [*scripts, *([piped] if piped else [])]
    if name == "eval":
        return [" ".join(argv[1:])]
    if name in ("su", "runuser"):
        for index, arg in enumerate(argv[1:], start=1):
            if arg in ("-c", "--command") and index + 1 < len(argv):
                return [argv[index + 1]]
            if arg.startswith("--command="):
                return [arg.split("=", 1)[1]]
    return []


# --------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------

# Top-level directories whose removal wrecks the node: Linux, plus the macOS ones.
_SYSTEM_DIRS = (
    "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "opt", "root", "sbin", "srv", "usr",
    "var", "sys", "proc", "run", "mnt", "media",
    "system", "library", "applications", "users", "private", "volumes", "cores",
)
_GLOB_CHARS = frozenset("*?[")
_HOME_RE = re.compile(r"^(~[^/]*|\$HOME|\$\{HOME\})(/.*)?$")
_BLOCK_DEVICE_RE = re.compile(
    r"^/dev/(sd[a-z]+\d*|hd[a-z]+\d*|vd[a-z]+\d*|xvd[a-z]+\d*|nvme\d+(n\d+(p\d+)?)?|mmcblk\d+(p\d+|boot\d+)?"
    r"|dm-\d+|loop\d+|md\d+(p\d+)?|md/.+|r?disk\d+(s\d+)*|mapper/.+|disk/.+)$"
)


def _normalize(path: str) -> str:
    if path.startswith("~"):
        tail = posixpath.normpath("/" + path[1:].lstrip("/"))
        return "~" if tail == "/" else "~" + tail
    return posixpath.normpath(re.sub(r"/+", "/", path))


def _resolve(target: str, cwd: str | None) -> str | None:
    """The absolute (or ``~``-relative) path a target names, or None when it cannot be known."""
    home = _HOME_RE.match(target)
    if home:
        return _normalize("~" + (home.group(2) or ""))
    if "$" in target or "`" in target:
        return None
    if target.startswith("/"):
        return _normalize(target)
    if cwd is None or not target:
        return None
    return _normalize(cwd.rstrip("/") + "/" + target)


def _wildcard_only(component: str) -> bool:
    """A path component that matches (nearly) everything: ``*``, ``.*``, ``*.*``, ``?``."""
    return bool(component) and set(component) <= set("*?.") and bool(set(component) & {"*", "?"})


def _dangerous_target(path: str) -> str | None:
    """Which rm rule a resolved target falls under, if any."""
    if path == "~" or path.startswith("~/"):
        rest = path[2:].split("/") if path.startswith("~/") else []
        return "rm-home" if all(_wildcard_only(c) for c in rest) else None
    if path == "/":
        return "rm-root"
    first, *rest = path[1:].split("/")
    if not all(_wildcard_only(c) for c in rest):
        return None  # a path deeper than a system directory, such as /var/tmp/build
    if _wildcard_only(first):
        return "rm-root"
    lowered = first.casefold()
    if lowered in _SYSTEM_DIRS:
        return "rm-system-dir"
    if _GLOB_CHARS & set(first) and any(fnmatch.fnmatchcase(d, lowered) for d in _SYSTEM_DIRS):
        return "rm-system-dir"
    return None


def _block_device(target: str, cwd: str | None) -> str | None:
    path = _resolve(target, cwd)
    return path if path is not None and _BLOCK_DEVICE_RE.match(path) else None


# --------------------------------------------------------------------------------------
# Built-in rules
# --------------------------------------------------------------------------------------


@dataclass
class _Hit:
    rule: str
    what: str
    advice: str


_ADVICE = {
    "rm-root": "Delete the specific paths you mean instead (a folder under /tmp or the job directory).",
    "rm-home": "Name the files or folders inside the home directory instead.",
    "rm-system-dir": "Delete a specific path below it instead (deeper paths such as /var/tmp/<dir> are allowed).",
    "disk-format": "Formatting disks is not done through the bridge; do it on the node by hand.",
    "dd-block-device": "Write to a regular file instead (for example of=/tmp/disk.img).",
    "redirect-block-device": "Write to a regular file (or /dev/null) instead.",
    "fork-bomb": "Remove the self-calling function.",
    "power-state": "Power actions are not done through the bridge; use the node's own tooling.",
}
_DISKUTIL_ERASE = frozenset({"erasedisk", "erasevolume", "reformat", "partitiondisk", "zerodisk", "randomdisk",
                             "secureerase"})
_POWER_PROGRAMS = frozenset({"shutdown", "reboot", "halt", "poweroff"})
_POWER_VERBS = frozenset({"poweroff", "reboot", "halt", "kexec", "soft-reboot"})
_POWER_TARGETS = frozenset({f"{verb}.target" for verb in _POWER_VERBS} | {"ctrl-alt-del.target"})
_WRITING_REDIRS = frozenset({">", ">>", ">|", "&>", "&>>", "<>", ">&"})


def _hit(rule: str, what: str) -> _Hit:
    return _Hit(rule, what, _ADVICE[rule])


def _check_rm(args: list[str], cwd: str | None) -> _Hit | None:
    recursive = False
    targets: list[str] = []
    options_ended = False
    for arg in args:  # GNU rm takes options after operands too: `rm / -rf`
        if not options_ended and arg == "--":
            options_ended = True
        elif not options_ended and arg.startswith("--"):
            # getopt accepts any unambiguous prefix: --rec, --recursive
            recursive |= "recursive".startswith(arg[2:].split("=", 1)[0])
        elif not options_ended and arg.startswith("-") and len(arg) > 1:
            recursive |= "r" in arg or "R" in arg
        else:
            targets.append(arg)
    for target in targets:
        path = _resolve(target, cwd)
        rule = _dangerous_target(path) if path is not None else None
        if rule is None or not (recursive or _GLOB_CHARS & set(path or "")):
            continue
        flags = "recursive " if recursive else ""
        assert path is not None
        wiped = {
            "rm-root": "everything on the filesystem",
            "rm-home": "the whole home directory",
            "rm-system-dir": f"the system directory /{path[1:].split('/')[0]}",
        }[rule]
        resolved = "" if path == target else f" ({path})"
        return _hit(rule, f"{flags}rm of '{target}'{resolved} would delete {wiped}")
    return None


def _check_power(name: str, args: list[str]) -> _Hit | None:
    if name in _POWER_PROGRAMS:
        if "--help" in args or (name == "shutdown" and "-c" in args):
            return None  # help, or cancelling a pending shutdown
        return _hit("power-state", f"'{name}' shuts down or reboots the node")
    if name in ("init", "telinit") and args[:1] in (["0"], ["6"]):
        return _hit("power-state", f"'{name} {args[0]}' shuts down or reboots the node")
    if name == "systemctl":
        _, operands = _after_options(args, "HMtpsno", {"host", "machine", "type", "property", "signal", "lines",
                                                     "output", "root", "job-mode", "kill-whom", "state", "when"})
        verb = operands[0] if operands else ""
        if verb in _POWER_VERBS or (verb in ("start", "isolate", "restart") and _POWER_TARGETS & set(operands[1:])):
            return _hit("power-state", f"'systemctl {' '.join(operands)}' shuts down or reboots the node")
    return None


def _check_program(argv: list[str], cwd: str | None) -> _Hit | None:
    """Built-in rules that look at one program and its arguments."""
    name = _program(argv[0])
    args = argv[1:]
    if name == "rm":
        return _check_rm(args, cwd)
    if name in ("mkfs", "mke2fs", "mkdosfs", "mkntfs") or name.startswith(("mkfs.", "newfs")):
        return _hit("disk-format", f"'{name}' creates a filesystem, erasing what the device held")
    if name == "wipefs":  # without --all/--offset it only lists signatures
        options = [a for a in args if a.startswith("-")]
        erases = any(o in ("--all", "--offset") or (o[1] != "-" and ("a" in o or "o" in o)) for o in options)
        dry_run = any(o == "--no-act" or (o[1] != "-" and "n" in o) for o in options)
        if erases and not dry_run:
            return _hit("disk-format", "'wipefs' with --all/--offset erases filesystem signatures")
        return None
    if name == "diskutil" and args and args[0].casefold() in _DISKUTIL_ERASE:
        return _hit("disk-format", f"'diskutil {args[0]}' erases a disk")
    if name == "dd":
        for arg in args:
            if arg.startswith("of=") and (device := _block_device(arg[3:], cwd)):
                return _hit("dd-block-device", f"dd writes onto the block device {device}")
        return None
    if name == "tee":
        _, files = _after_options(args)
        for target in files:
            if hit := _check_written_target(target, cwd, "tee"):
                return hit
        return None
    return _check_power(name, args)


def _check_written_target(target: str, cwd: str | None, writer: str) -> _Hit | None:
    """A file that ``writer`` (tee, a redirection) writes to: a block device or the sysrq trigger."""
    if device := _block_device(target, cwd):
        return _hit("redirect-block-device", f"{writer} writes onto the block device {device}")
    if _resolve(target, cwd) == "/proc/sysrq-trigger":
        return _hit("power-state", f"{writer} writes to /proc/sysrq-trigger, which can reboot or halt the node")
    return None


def _check_redirections(simple: _Simple, cwd: str | None) -> _Hit | None:
    for redir in simple.redirs:
        target = redir.target.text
        if redir.op not in _WRITING_REDIRS or (redir.op == ">&" and re.fullmatch(r"\d+-?|-", target)):
            continue
        if hit := _check_written_target(target, cwd, f"'{redir.op} {target}'"):
            return hit
    return None


def _is_fork_bomb(function: _Function) -> bool:
    calls_itself = any(
        argv and any(_program(level[0]) == function.name for level in _unwrap(argv))
        for argv in function.body_commands
    )
    return calls_itself and bool(function.body_ops & {"|", "|&", "&"})


# --------------------------------------------------------------------------------------
# User rules and the policy
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyRule:
    """A rule from a policy file: matches a program (``argv0`` + ``args_regex``) or a text ``regex``."""

    id: str
    reason: str
    argv0: str | None = None
    args_regex: re.Pattern[str] | None = None
    regex: re.Pattern[str] | None = None

    def matches(self, argv: Sequence[str], text: str) -> bool:
        if self.regex is not None:
            return self.regex.search(text) is not None
        if self.argv0 is None or not argv:
            return False
        if not (fnmatch.fnmatchcase(argv[0], self.argv0) or fnmatch.fnmatchcase(_program(argv[0]), self.argv0)):
            return False
        return self.args_regex is None or self.args_regex.search(" ".join(argv[1:])) is not None


@dataclass
class _View:
    """One simple command at one wrapper level, as rules see it."""

    argv: list[str]
    text: str  # argv joined by spaces, then the redirections (`echo x > /dev/sda`)


@dataclass
class _State:
    cwd: str | None = None  # followed through `cd` so that `cd / && rm -rf *` is understood
    overrides: list[tuple[PolicyRule, str, str]] = field(default_factory=list)  # (allow rule, built-in, command)


_RULE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_RULE_KEYS = frozenset({"id", "reason", "argv0", "args_regex", "regex"})


class CommandPolicy:
    """Built-in deny rules plus the deny and allow rules of an optional policy file."""

    def __init__(
        self,
        deny: Sequence[PolicyRule] = (),
        allow: Sequence[PolicyRule] = (),
        source: str = "the policy file",
    ) -> None:
        self.deny = list(deny)
        self.allow = list(allow)
        self.source = source
        self.on_unsure = "deny"

    @classmethod
    def from_file(cls, path: str | Path | None) -> CommandPolicy:
        """Load a policy file; ``None`` or a missing file means the built-in rules only."""
        if path is None:
            return cls()
        file = Path(path)
        if not file.exists():
            return cls()
        try:
            data = yaml.safe_load(file.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{file}: cannot read the policy file: {exc}") from exc
        except yaml.YAMLError as exc:
            raise PolicyError(f"{file}: not valid YAML: {exc}") from exc
        return cls.from_mapping(data, source=str(file))

    @classmethod
    def from_mapping(cls, data: Any, source: str = "<policy>") -> CommandPolicy:
        """Build a policy from already-loaded data (the content of a policy file)."""
        if data is None:
            return cls(source=source)
        if not isinstance(data, Mapping):
            raise PolicyError(f"{source}: the top level must be a mapping with 'deny' and/or 'allow' lists")
        unknown = sorted(set(map(str, data)) - {"deny", "allow"})
        if unknown:
            raise PolicyError(f"{source}: unknown top-level field '{unknown[0]}' (expected 'deny' and/or 'allow')")
        seen_ids: set[str] = set()
        lists: dict[str, list[PolicyRule]] = {}
        for kind in ("deny", "allow"):
            entries = data.get(kind) or []
            if not isinstance(entries, list):
                raise PolicyError(f"{source}: '{kind}' must be a list of rules")
            lists[kind] = [_load_rule(entry, f"{kind}[{i}]", source, seen_ids) for i, entry in enumerate(entries)]
        return cls(deny=lists["deny"], allow=lists["allow"], source=source)

    def check_many(self, commands: Sequence[str]) -> list[PolicyDecision]:
        return [self.check(command) for command in commands]

    def check(self, command: str) -> PolicyDecision:
        """Whether ``command`` may run; a refusal says which rule matched and what to do."""
        state = _State()
        try:
            denial = self._check_text(command, state, depth=0)
        except (_Unparseable, RecursionError) as exc:
            problem = str(exc) if isinstance(exc, _Unparseable) else "substitutions are nested too deeply"
            return PolicyDecision(
                False, "unparseable",
                f"denied: the command cannot be parsed ({problem}) (rule unparseable). "
                "Balance the quotes and brackets or simplify the command; the policy only lets through "
                "commands it can parse.",
            )
        if denial is not None:
            return denial
        if state.overrides:
            rule, builtin, text = state.overrides[0]
            return PolicyDecision(
                True, rule.id,
                f"allowed by rule '{rule.id}' from {self.source} ({rule.reason}), "
                f"which overrides built-in rule '{builtin}' for `{text}`",
            )
        return PolicyDecision(True, None, "no deny rule matched")

    # -- internals ---------------------------------------------------------------------

    def _check_text(self, text: str, state: _State, depth: int) -> PolicyDecision | None:
        if depth > _MAX_DEPTH:
            raise _Unparseable(f"shell strings are nested more than {_MAX_DEPTH} levels deep")
        parsed = _parse(_Lexer(text).run())
        for function in parsed.functions:
            if _is_fork_bomb(function):
                argv = [function.name, *(word for argv in function.body_commands for word in argv)]
                view = _View(argv, function.text)
                hit = _hit("fork-bomb", f"function '{function.name}' calls itself in a pipe or in the background")
                denial = self._judge([view], [hit], state)
                if denial is not None:
                    return denial
        groups: list[str | None] = []  # the directory at each open `(`, restored at its `)`
        for pipeline in parsed.pipelines:
            before_pipeline = state.cwd
            piped: str | None = None
            for simple in pipeline:
                groups += [state.cwd] * simple.opens
                denial = self._check_simple(simple, piped, state, depth)
                if denial is not None:
                    return denial
                piped = _piped_text(simple)
                for _ in range(simple.closes):
                    if groups:
                        state.cwd = groups.pop()
            if len(pipeline) > 1:  # each part of a pipeline runs in a subshell
                state.cwd = before_pipeline
        return None

    def _check_simple(
        self, simple: _Simple, piped: str | None, state: _State, depth: int
    ) -> PolicyDecision | None:
        # Substitutions run first, whatever the command around them is allowed to do.
        nested: list[str] = []
        for word in simple.words:
            nested += word.substitutions
        for redir in simple.redirs:
            nested += redir.target.substitutions + redir.body_substitutions
        cwd = state.cwd
        for script in nested:
            denial = self._check_text(script, state, depth + 1)
            state.cwd = cwd  # a substitution runs in a subshell: its `cd` does not last
            if denial is not None:
                return denial

        argv = _command_words(simple.words)
        levels = _unwrap(argv) if argv else [[]]
        redir_text = " ".join(_render(redir) for redir in simple.redirs)
        views = [_View(level, " ".join([*level, redir_text]).strip()) for level in levels]
        hits = [hit for level in levels if level and (hit := _check_program(level, state.cwd))]
        if (redirect_hit := _check_redirections(simple, state.cwd)) is not None:
            hits.append(redirect_hit)
        denial = self._judge(views, hits, state)
        if denial is not None:
            return denial

        for level in levels:
            if not level:
                continue
            for script in _nested_scripts(level, simple, piped):
                denial = self._check_text(script, state, depth + 1)
                if _program(level[0]) != "eval":  # only eval runs in this shell
                    state.cwd = cwd
                if denial is not None:
                    return denial
        while len(argv) > 1 and _program(argv[0]) in ("builtin", "command"):
            argv = argv[1:]
        if argv and _program(argv[0]) in ("cd", "pushd", "popd"):
            _follow_cd(_program(argv[0]), argv[1:], state)
        return None

    def _judge(self, views: list[_View], hits: list[_Hit], state: _State) -> PolicyDecision | None:
        """User deny rules, then built-in hits unless an allow rule matches this very command."""
        for rule in self.deny:
            for view in views:
                if rule.matches(view.argv, view.text):
                    return PolicyDecision(
                        False, rule.id,
                        f"denied: {rule.reason} (rule {rule.id} from {self.source}, in `{view.text}`). "
                        f"Change the command, or edit rule '{rule.id}' in {self.source}.",
                    )
        if not hits:
            return None
        allow = next((r for r in self.allow for v in views if r.matches(v.argv, v.text)), None)
        for hit in hits:
            if allow is not None:
                state.overrides.append((allow, hit.rule, views[0].text))
                continue
            return PolicyDecision(
                False, hit.rule,
                f"denied: {hit.what} (rule {hit.rule}, in `{views[0].text}`). {hit.advice} {_OVERRIDE_HINT}",
            )
        return None


def _follow_cd(name: str, args: list[str], state: _State) -> None:
    operands = [a for a in args if not a.startswith("-") or a == "-"]
    if name == "pushd" and "-n" in args:
        return  # only adds to the directory stack
    if name == "popd" or (name == "pushd" and (not operands or operands[0].startswith("+"))):
        state.cwd = None  # the directory stack is not tracked
    elif not operands:
        state.cwd = "~"
    elif operands[0] == "-" or operands[0].startswith("+"):
        state.cwd = None  # the previous directory is not tracked
    else:
        state.cwd = _resolve(operands[0], state.cwd)


def _load_rule(entry: Any, where: str, source: str, seen_ids: set[str]) -> PolicyRule:
    def fail(field_name: str, problem: str) -> PolicyError:
        location = f"{where}.{field_name}" if field_name else where
        return PolicyError(f"{source}: {location}: {problem}")

    if not isinstance(entry, Mapping):
        raise fail("", "a rule must be a mapping with id, reason and argv0 or regex")
    unknown = sorted(set(map(str, entry)) - _RULE_KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown field (expected {', '.join(sorted(_RULE_KEYS))})")
    for required in ("id", "reason"):
        value = entry.get(required)
        if not isinstance(value, str) or not value.strip():
            raise fail(required, "required, a non-empty string")
    rule_id = entry["id"]
    if not _RULE_ID_RE.match(rule_id):
        raise fail("id", f"'{rule_id}' is not a valid id (letters, digits, '.', '_', ':', '-')")
    if rule_id in BUILTIN_RULES:
        raise fail("id", f"'{rule_id}' is the id of a built-in rule; choose another")
    if rule_id in seen_ids:
        raise fail("id", f"'{rule_id}' is used by another rule")
    seen_ids.add(rule_id)
    for optional in ("argv0", "args_regex", "regex"):
        if optional in entry and (not isinstance(entry[optional], str) or not entry[optional]):
            raise fail(optional, "must be a non-empty string")
    if ("argv0" in entry) == ("regex" in entry):
        raise fail("argv0", "a rule needs exactly one of 'argv0' or 'regex'")
    if "args_regex" in entry and "argv0" not in entry:
        raise fail("args_regex", "only allowed together with 'argv0'")

    def compiled(name: str) -> re.Pattern[str] | None:
        if name not in entry:
            return None
        try:
            return re.compile(entry[name])
        except re.error as exc:
            raise fail(name, f"invalid regular expression: {exc}") from exc

    return PolicyRule(
        id=rule_id,
        reason=entry["reason"].strip(),
        argv0=entry.get("argv0"),
        args_regex=compiled("args_regex"),
        regex=compiled("regex"),
    )
