"""Command-line options read the way GNU getopt_long reads them.

Rules must see what the program sees: options after operands (``rm / -rf``: getopt permutes),
``--`` ending the options (``reboot -- --help`` reboots), short clusters with attached values
(``-s9``, ``-uroot``), ``--name=value`` and ``--name value``, and long options abbreviated to
any unambiguous prefix (``wipefs --al`` is ``--all``, ``rm --rec`` is ``--recursive``).
An argument only known at run time is kept as an operand and reported in ``dynamic``: it
could be anything, an option included, so a rule that depends on it must not decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mcp_bridge.policy.words import Arg

FLAG, VALUE, OPTIONAL = 0, 1, 2  # long option kinds: no value, a value, an optional `=value`


@dataclass
class Options:
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # ("-r", None), ("--signal", "TERM")
    operands: list[Arg] = field(default_factory=list)
    dynamic: list[Arg] = field(default_factory=list)
    taken: dict[int, Arg] = field(default_factory=dict)  # index in seen -> the word an option took as its value

    def has(self, *names: str) -> bool:
        return any(name in names for name, _ in self.seen)

    def values(self, *names: str) -> list[str | None]:
        return [value for name, value in self.seen if name in names]

    def static_operands(self) -> list[str]:
        return [a.value for a in self.operands if a.value is not None]


def long_name(text: str, longs: Mapping[str, int]) -> str | None:
    """The long option ``text`` (without ``--``) stands for: exact, or a unique prefix."""
    if text in longs:
        return text
    candidates = [name for name in longs if name.startswith(text)]
    return candidates[0] if len(candidates) == 1 else None


def parse(
    args: Sequence[Arg],
    flags: str = "",
    values: str = "",
    longs: Mapping[str, int] | None = None,
    optional: str = "",
    permute: bool = True,
    aliases: Mapping[str, str] | None = None,
) -> Options:
    """Split ``args`` into options and operands. ``flags``/``values``/``optional`` list short
    letters without a value, with a value, with an optional attached value (``flags`` is the
    command's table for the reader: any letter in neither of the others is read as a flag);
    ``aliases`` maps option names to one canonical spelling (``{"-r": "--recursive"}``)."""
    longs = longs or {}
    aliases = aliases or {}
    result = Options()

    def add(name: str, value: str | None, word: Arg | None = None) -> None:
        if word is not None:
            result.taken[len(result.seen)] = word
        result.seen.append((aliases.get(name, name), value))

    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        text = arg.value
        if text is None:
            result.dynamic.append(arg)
            result.operands.append(arg)
            if not permute:
                break
            continue
        if text == "--":
            break
        if not text.startswith("-") or text == "-":
            result.operands.append(arg)
            if not permute:
                break
            continue
        if text.startswith("--"):
            body, has_value, attached = text[2:].partition("=")
            name = long_name(body, longs)
            if name is None:
                add(text.split("=", 1)[0], attached if has_value else None)
                continue
            kind = longs[name]
            if kind == VALUE and not has_value and index < len(args):
                word = args[index]
                add("--" + name, word.value, word)
                if body == name:
                    if word.value is None:
                        result.dynamic.append(word)
                    index += 1
                # else an abbreviation, which may stand for a flag the table lacks (`--partial` is not
                # --partial-dir): the next word is read as this value AND as the next argument.
                continue
            add("--" + name, attached if has_value else None)
            continue
        for position in range(1, len(text)):
            letter = text[position]
            rest = text[position + 1:]
            if letter in values:
                if rest:
                    add("-" + letter, rest)
                elif index < len(args):
                    add("-" + letter, args[index].value, args[index])
                    if args[index].value is None:
                        result.dynamic.append(args[index])
                    index += 1
                else:
                    add("-" + letter, None)
                break
            if letter in optional:
                add("-" + letter, rest or None)
                break
            add("-" + letter, None)
    if index < len(args):
        rest = list(args[index:])
        result.operands.extend(rest)
        result.dynamic.extend(a for a in rest if a.value is None)
    return result
