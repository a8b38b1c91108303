"""From a parsed word to the argument(s) it becomes, when that is known before the command runs.

A word is *static* when its value does not depend on run time: literal text, quoted or
escaped (``'rm'``, ``r\\m``, ``"rm"``), ``$'...'`` (decoded: ``$'\\x72m'`` is ``rm``), an empty
``$()``, brace expansion (``{rm,-rf,/etc}`` is three static words, expanded here with a size
cap), ``~`` and ``$HOME`` (kept as ``~`` so that path rules know a home directory is meant),
and variables the walk has seen assigned a static value. Anything else (``$x``, ``$(cmd)``,
`` `cmd` ``, ``$((...))``, ``${IFS}``) makes the word *dynamic*: an :class:`Arg` with no value and
a sentence saying why, which a rule that needs it turns into *confirm*.

Unquoted glob characters keep the word static but mark it ``glob``: a path rule reads the
pattern (``/e*`` can only match top-level names starting with ``e``), a program name that is
a pattern (``/???/r?``) is never taken as known.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mcp_bridge.policy.syntax import Arith, CmdSub, Lit, Param, Part, Word

MAX_BRACE_WORDS = 64
MAX_BRACE_CHARS = 16 * 1024
MAX_BRACE_DEPTH = 32
_GLOB_RE = re.compile(r"[*?]|\[.*\]", re.DOTALL)
# Parameters that are always a number (and cannot be assigned to a string): $$, $!, $?, $#, $RANDOM.
NUMBERS = frozenset({"$", "!", "?", "#", "RANDOM", "SRANDOM"})
_IFS = re.compile(r"[ \t\n]+")
_BRACE_SPLIT = re.compile(r"([{},])")
_SEQUENCE_RE = re.compile(r"^(-?\d+|[A-Za-z])\.\.(-?\d+|[A-Za-z])(?:\.\.(-?\d+))?$")


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument as rules see it: its static ``value``, or None and ``why`` it is unknown."""

    value: str | None
    raw: str
    glob: bool = False
    why: str = ""
    rule: str = "dynamic-target"  # the rule a rule reports when it needs this unknown value

    @property
    def static(self) -> bool:
        return self.value is not None

    def show(self) -> str:
        return self.value if self.value is not None else self.raw


def dynamic_arg(raw: str, why: str, rule: str = "dynamic-target") -> Arg:
    return Arg(None, raw, why=why, rule=rule)


def joined_code(words: Sequence[Arg]) -> Arg:
    """Words a shell runs as one piece of code (``eval a b``, ssh's remote command): static when all are."""
    if all(word.value is not None for word in words):
        text = " ".join(word.value for word in words if word.value is not None)
        return Arg(text, text)
    raw = " ".join(word.raw for word in words)
    dynamic = next(word for word in words if word.value is None)
    return dynamic_arg(raw, dynamic.why or f"the command '{raw[:60]}' is built from words only known at run time",
                       "code-from-elsewhere")


class Env:
    """What the walk knows about variables: static values, whether $HOME is still trusted."""

    __slots__ = ("bindings", "home_tainted")

    def __init__(self, bindings: Mapping[str, Sequence[Arg]] | None = None, home_tainted: bool = False) -> None:
        self.bindings: dict[str, tuple[Arg, ...]] = {k: tuple(v) for k, v in (bindings or {}).items()}
        self.home_tainted = home_tainted

    def copy(self) -> Env:
        env = Env(home_tainted=self.home_tainted)
        env.bindings = dict(self.bindings)
        return env

    def lookup(self, name: str) -> tuple[Arg, ...] | None:
        return self.bindings.get(name)


def describe_part(part: Part) -> str:
    if isinstance(part, Param):
        return f"${{{part.name}}}" if part.braced else f"${part.name}"
    if isinstance(part, CmdSub):
        return {"`": "a `...` substitution", "<(": "a <(...) substitution",
                ">(": "a >(...) substitution"}.get(part.kind, "a $(...) substitution")
    if isinstance(part, Arith):
        return "a $((...)) expansion"
    return "text"


def expand(word: Word, env: Env, pick: tuple[str, int] | None = None) -> list[Arg]:
    """The argument(s) ``word`` becomes. ``pick`` chooses one value of a multi-valued variable.

    Segments keep how each piece may be changed: ``q`` quoted text (never), ``u`` unquoted text
    (brace expansion, globbing), ``p`` an unquoted variable's value (split into words at spaces
    and globbed, but not brace-expanded: bash expands braces before variables), ``g`` a loop
    variable standing for the files a pattern matches."""
    segments: list[tuple[str, str]] = []
    for index, part in enumerate(word.parts):
        if isinstance(part, Lit):
            segments.append((part.text, "q" if part.quoted else "u"))
            continue
        if isinstance(part, CmdSub) and part.kind in ("$(", "`") and not part.body.items:
            continue  # `$()` is the empty string: r$()m is rm
        if isinstance(part, Param) and part.plain:
            value = _param_value(part.name, index, env, pick)
            if value is not None:
                text, glob = value
                if index == 0 and part.name == "HOME" and text == "~":
                    kind = "u"  # $HOME at the start acts as ~
                elif glob:
                    kind = "g"
                else:
                    kind = "q" if part.quoted else "p"
                segments.append((text, kind))
                continue
        return [dynamic_arg(word.raw, f"'{word.raw}' holds {describe_part(part)}, only known at run time")]
    if segments and segments[0][1] == "u" and segments[0][0].startswith("~"):
        head = segments[0][0]
        name_end = head.find("/")
        tilde = head if name_end < 0 else head[:name_end]
        if tilde in ("~+", "~-"):
            return [dynamic_arg(word.raw, f"'{word.raw}' starts with {tilde}, a directory only known at run time")]
        if tilde == "~" and env.home_tainted:
            return [dynamic_arg(word.raw, f"'{word.raw}' uses $HOME, which this command changes")]
        if tilde == "~" and "HOME" in env.bindings and len(env.bindings["HOME"]) == 1:
            bound = env.bindings["HOME"][0]
            if bound.value is None:
                return [dynamic_arg(word.raw, f"'{word.raw}' uses $HOME, which this command changes")]
            segments[0] = (bound.value + head[len(tilde):], "q")
    args: list[Arg] = []
    for field in _split(segments):
        glob = any(kind == "g" or (kind in "up" and _GLOB_RE.search(text)) for text, kind in field)
        if any(kind == "u" and "{" in text for text, kind in field):
            texts = expand_braces([(text, kind != "u") for text, kind in field])
            if texts is None:
                return [dynamic_arg(word.raw, f"the brace expansion in '{word.raw[:60]}' is too large to check")]
            args.extend(Arg(text, word.raw, glob) for text in texts)
        else:
            args.append(Arg("".join(text for text, _ in field), word.raw, glob))
    return args


def _split(segments: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Word splitting: an unquoted variable's value breaks the word at spaces, tabs and newlines."""
    if not any(kind == "p" and _IFS.search(text) for text, kind in segments):
        return [segments]
    fields: list[list[tuple[str, str]]] = [[]]
    for text, kind in segments:
        if kind != "p":
            fields[-1].append((text, kind))
            continue
        for index, piece in enumerate(_IFS.split(text)):
            if index:
                fields.append([])
            if piece:
                fields[-1].append((piece, kind))
    return [field for field in fields if field]


def _param_value(name: str, index: int, env: Env, pick: tuple[str, int] | None) -> tuple[str, bool] | None:
    bound = env.lookup(name)
    if bound is not None:
        if len(bound) == 1:
            chosen = bound[0]
        elif pick is not None and pick[0] == name and 0 <= pick[1] < len(bound):
            chosen = bound[pick[1]]
        else:
            return None
        return None if chosen.value is None else (chosen.value, chosen.glob)
    if name == "HOME" and not env.home_tainted:
        return "~", False
    if name in NUMBERS:
        return "4242", False  # some number, never 0, 1 or -1: enough for paths and pids
    return None


def param_names(word: Word) -> list[str]:
    return [part.name for part in word.parts if isinstance(part, Param) and part.plain]


# -- brace expansion ------------------------------------------------------------------------

class _Alt:
    __slots__ = ("options",)

    def __init__(self, options: list[list[object]]) -> None:
        self.options = options


class _TooBig(Exception):
    pass


def expand_braces(segments: Sequence[tuple[str, bool]]) -> list[str] | None:
    """Bash brace expansion over (text, quoted) segments; None when the result is too large.

    One pass with a stack of open braces (linear); ``{a}`` and unmatched braces stay literal,
    ``{1..5}``/``{a..e}`` are sequences, quoted braces and commas are plain text.
    """
    try:
        return _expand_items(_brace_tree(segments))
    except _TooBig:
        return None


def _brace_tree(segments: Sequence[tuple[str, bool]]) -> list[object]:
    stack: list[list[list[object]]] = [[[]]]  # frames of alternatives of items (str or _Alt)
    for text, quoted in segments:
        if quoted:
            stack[-1][-1].append(text)
            continue
        for char in _BRACE_SPLIT.split(text):
            if not char:
                continue
            if char == "{":
                if len(stack) > MAX_BRACE_DEPTH:
                    raise _TooBig
                stack.append([[]])
            elif char == "," and len(stack) > 1:
                stack[-1].append([])
            elif char == "}" and len(stack) > 1:
                frame = stack.pop()
                if len(frame) > 1:
                    stack[-1][-1].append(_Alt(frame))
                else:
                    stack[-1][-1].append(_sequence(frame[0]))
            else:
                stack[-1][-1].append(char)
    while len(stack) > 1:  # unmatched `{`: literal text
        frame = stack.pop()
        flat: list[object] = ["{"]
        for index, option in enumerate(frame):
            if index:
                flat.append(",")
            flat.extend(option)
        stack[-1][-1].extend(flat)
    return stack[0][0]


def _sequence(items: list[object]) -> object:
    """``{1..5}`` as an alternation, anything else as literal ``{...}``."""
    if all(isinstance(item, str) for item in items):
        text = "".join(items)  # type: ignore[arg-type]
        match = _SEQUENCE_RE.match(text)
        if match:
            values = _sequence_values(match.group(1), match.group(2), match.group(3))
            if values is not None:
                return _Alt([[value] for value in values])
    return _Alt([["{", *items, "}"]])


def _sequence_values(first: str, last: str, step_text: str | None) -> list[str] | None:
    step = abs(int(step_text)) if step_text else 1
    step = step or 1
    if first.lstrip("-").isdigit() and last.lstrip("-").isdigit():
        start, end = int(first), int(last)
        count = abs(end - start) // step + 1
        if count > MAX_BRACE_WORDS:
            raise _TooBig

        def padded(text: str) -> bool:
            digits = text.lstrip("-")
            return len(digits) > 1 and digits.startswith("0")

        width = max(len(first), len(last)) if padded(first) or padded(last) else 0
        direction = 1 if end >= start else -1
        return [str(start + direction * step * i).zfill(width) for i in range(count)]
    if len(first) == 1 and len(last) == 1 and not first.isdigit() and not last.isdigit():
        start, end = ord(first), ord(last)
        count = abs(end - start) // step + 1
        if count > MAX_BRACE_WORDS:
            raise _TooBig
        direction = 1 if end >= start else -1
        return [chr(start + direction * step * i) for i in range(count)]
    return None


def _expand_items(items: list[object]) -> list[str]:
    """Expand one alternative. Results are kept as lists of pieces and joined at the end, so a
    long word costs O(pieces x results), never the quadratic cost of growing strings."""
    coalesced: list[object] = []
    for item in items:
        if isinstance(item, str) and coalesced and isinstance(coalesced[-1], str):
            coalesced[-1] += item
        else:
            coalesced.append(item)
    results: list[list[str]] = [[]]
    length = 0  # of the longest result
    for item in coalesced:
        if isinstance(item, str):
            options = [item]
        else:
            assert isinstance(item, _Alt)
            options = []
            for option in item.options:
                options.extend(_expand_items(option))
                if len(options) > MAX_BRACE_WORDS:
                    raise _TooBig
        if len(options) == 1:
            for result in results:
                result.append(options[0])
        else:
            results = [[*result, option] for result in results for option in options]
        length += max(len(option) for option in options)
        if len(results) > MAX_BRACE_WORDS or length * len(results) > MAX_BRACE_CHARS:
            raise _TooBig
    return ["".join(result) for result in results]
