"""The tree the parser builds from a command line: words made of parts, and commands.

Words keep their parts apart (literal text, quoted or not; parameters; command and process
substitutions; arithmetic) so that later stages can tell a static word (``'rm'``, ``r\\m``,
``$'\\x72m'``) from one only known at run time (``$x``, ``$(printf rm)``, ``/???/r?``).
Commands mirror the shell grammar: lists, and-or chains, pipelines, simple commands,
groups, ``if``/``while``/``for``/``case``/``[[``/``((``, function definitions and here-documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Lit:
    """Literal text after quote removal; ``quoted`` text is never split, globbed or brace-expanded."""

    text: str
    quoted: bool = False


@dataclass(slots=True)
class Param:
    """``$name``, ``${name...}``; ``inner`` holds the expansions inside ``${...}``."""

    name: str
    braced: bool = False
    plain: bool = True  # `$x` or `${x}` with no operator
    quoted: bool = False  # inside "...": its value is not split into words
    assigns: bool = False  # `${x:=value}` / `${x=value}` assign to the variable
    inner: list[Part] = field(default_factory=list)


@dataclass(slots=True)
class CmdSub:
    """``$(...)``, backticks, ``<(...)`` or ``>(...)``: a script run to build a word."""

    body: Script
    kind: str  # "$(", "`", "<(", ">("


@dataclass(slots=True)
class Arith:
    """``$((...))`` or ``((...))``: the expansions inside it still run."""

    parts: list[Part]
    assigns: bool = False  # contains `=` (other than a comparison): may change a variable


Part = Lit | Param | CmdSub | Arith


@dataclass(slots=True)
class Word:
    parts: list[Part]
    source: str  # the text the word was read from
    start: int
    end: int

    @property
    def raw(self) -> str:
        return self.source[self.start:self.end]

    def literal(self) -> str | None:
        """The text of an all-literal, fully unquoted word (how reserved words are recognised)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Lit) and not self.parts[0].quoted:
            return self.parts[0].text
        return None


@dataclass(slots=True)
class Heredoc:
    delimiter: str
    quoted: bool  # a quoted delimiter makes the body literal data
    strip_tabs: bool
    source: str = ""  # the body is source[start:end], read in place
    start: int = 0
    end: int = 0
    parts: list[Part] = field(default_factory=list)  # expansions in an unquoted body

    @property
    def body(self) -> str:
        """The body text (built only when something reads it, such as a shell fed the here-document)."""
        text = self.source[self.start:self.end]
        text = text[:-1] if text.endswith("\n") else text
        if self.strip_tabs:
            text = "\n".join(line.lstrip("\t") for line in text.split("\n"))
        return text


@dataclass(slots=True)
class Redir:
    fd: str | None
    op: str  # < > >> >| <> <& >& &> &>> << <<- <<<
    target: Word | None
    heredoc: Heredoc | None = None


@dataclass(slots=True)
class Simple:
    words: list[Word]
    redirs: list[Redir]
    start: int = 0
    end: int = 0


@dataclass(slots=True)
class Group:
    body: Script
    subshell: bool
    redirs: list[Redir] = field(default_factory=list)


@dataclass(slots=True)
class If:
    clauses: list[tuple[Script, Script]]
    otherwise: Script | None
    redirs: list[Redir] = field(default_factory=list)


@dataclass(slots=True)
class Loop:
    """``while``/``until`` (condition + body) and ``for``/``select`` (variable + words + body)."""

    kind: str
    body: Script
    condition: Script | None = None
    variable: str | None = None
    words: list[Word] | None = None  # None: `for x; do` iterates over "$@"
    arith: Arith | None = None  # for (( ; ; ))
    body_text: str = ""  # source of the body, to see whether it may change the loop variable
    redirs: list[Redir] = field(default_factory=list)


@dataclass(slots=True)
class Case:
    subject: Word
    arms: list[tuple[list[Word], Script]]
    redirs: list[Redir] = field(default_factory=list)


@dataclass(slots=True)
class Cond:
    """``[[ ... ]]``: words only, nothing is run but their expansions (in bash; see ``dash_text``)."""

    words: list[Word]
    redirs: list[Redir] = field(default_factory=list)
    dash_text: str = ""  # the same text, which dash (no [[) reads as ordinary commands


@dataclass(slots=True)
class ArithCmd:
    arith: Arith
    redirs: list[Redir] = field(default_factory=list)
    dash_text: str = ""  # dash reads `((` as two subshells


@dataclass(slots=True)
class FuncDef:
    name: str
    body: Command
    text: str = ""


@dataclass(slots=True)
class Coproc:
    body: Command


Command = Simple | Group | If | Loop | Case | Cond | ArithCmd | FuncDef | Coproc


@dataclass(slots=True)
class Pipeline:
    commands: list[Command]
    negated: bool = False


@dataclass(slots=True)
class AndOr:
    pipelines: list[Pipeline]
    ops: list[str]  # "&&" / "||" between them


@dataclass(slots=True)
class Script:
    items: list[tuple[AndOr, str]] = field(default_factory=list)  # terminator: ";", "&", "\n" or ""
