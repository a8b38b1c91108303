"""Characters to tokens: words, operators, redirections, here-documents.

One left-to-right pass; words (and what is nested in them) are read by
:class:`~mcp_bridge.policy.expansions.WordReader`, which calls back into the grammar
(:class:`~mcp_bridge.policy.parser.Parser` subclasses this lexer) for ``$(...)`` and backticks,
so each character is read once, not once per nesting level. Here-document bodies are read at
the newline after their operator, and their expansions parsed when the delimiter is unquoted.
"""

from __future__ import annotations

import bisect
import re

from mcp_bridge.policy.expansions import BREAK, WordReader
from mcp_bridge.policy.limits import Budget, Unparseable
from mcp_bridge.policy.syntax import Heredoc, Lit, Redir, Word

_REDIR_RE = re.compile(r"(\d+)?(<<<|<<-|&>>|<<|<>|<&|>>|>\||>&|&>|<|>)")
_OPERATORS = (";;&", ";;", ";&", "&&", "||", "|&", ";", "&", "|", "(", ")")


class Token:
    __slots__ = ("end", "kind", "redir", "start", "value", "word")

    def __init__(self, kind: str, start: int, end: int, value: str = "",
                 word: Word | None = None, redir: Redir | None = None) -> None:
        self.kind = kind  # "word", "op", "redir", "eof"
        self.start = start
        self.end = end
        self.value = value
        self.word = word
        self.redir = redir

    def describe(self) -> str:
        if self.kind == "eof":
            return "the end of the command"
        if self.kind == "op":
            return "a newline" if self.value == "\n" else f"'{self.value}'"
        word = self.word.raw if self.word else "a redirection"
        return f"'{word[:40]}'"


class Lexer(WordReader):
    def __init__(self, text: str, budget: Budget, dash: bool = False) -> None:
        self.dash = dash  # read as dash would: no $'...', [[, (( or function keyword
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.budget = budget
        self.pending: list[Heredoc] = []
        self.heredocs_read = 0
        self.memo: dict[tuple[str, int], tuple[object, int]] = {}
        self.limit = self.n
        self.paren_match: dict[int, int] = {}
        self._lines: dict[tuple[bool, str], dict[str, list[int]]] = {}
        self._line_ends: dict[tuple[bool, int], int] = {}
        self._peeked: Token | None = None

    # -- hooks the grammar provides ----------------------------------------------------

    # -- tokens --------------------------------------------------------------------------

    def peek(self) -> Token:
        if self._peeked is None:
            self._peeked = self._lex()
        return self._peeked

    def take(self) -> Token:
        token = self.peek()
        self._peeked = None
        return token

    def skip_blanks(self) -> None:
        text, n = self.text, self.n
        while self.pos < n:
            char = text[self.pos]
            if char in " \t\r":
                self.pos += 1
            elif char == "\\" and text.startswith("\n", self.pos + 1):
                self.pos += 2
            elif char == "#":
                newline = text.find("\n", self.pos)
                self.budget.spend((self.n if newline < 0 else newline) - self.pos)
                self.pos = self.n if newline < 0 else newline
            else:
                return

    def _lex(self) -> Token:
        self.skip_blanks()
        text, start = self.text, self.pos
        self.budget.spend(1)
        if start >= self.n:
            self._read_heredocs()  # bash takes the rest (nothing) as the body, with a warning
            return Token("eof", start, start)
        char = text[start]
        if char == "\n":
            self.pos += 1
            self._read_heredocs()
            return Token("op", start, start + 1, "\n")
        if char in "<>" and text.startswith("(", start + 1):
            word = self.read_word()
            return Token("word", start, self.pos, word=word)
        match = _REDIR_RE.match(text, start)
        if match is not None:
            return self._redirection(match)
        if char in ";&|()":
            op = next(o for o in _OPERATORS if text.startswith(o, start))
            self.pos += len(op)
            return Token("op", start, self.pos, op)
        word = self.read_word()
        return Token("word", start, self.pos, word=word)

    def _redirection(self, match: re.Match[str]) -> Token:
        start = self.pos
        fd, op = match.group(1), match.group(2)
        self.pos = match.end()
        while self.pos < self.n and self.text[self.pos] in " \t":
            self.pos += 1
        following = self.text[self.pos:self.pos + 2]
        if not following or (following[0] in BREAK and following not in ("<(", ">(")):
            raise Unparseable(f"the redirection '{op}' at character {start + 1} has no target")
        target = self.read_word()
        heredoc = None
        if op in ("<<", "<<-"):
            quoted = any(isinstance(p, Lit) and p.quoted for p in target.parts)
            if all(isinstance(p, Lit) for p in target.parts):
                delimiter = "".join(p.text for p in target.parts if isinstance(p, Lit))
            else:
                delimiter = target.raw
            heredoc = Heredoc(delimiter, quoted, op == "<<-")
            self.pending.append(heredoc)
        return Token("redir", start, self.pos, redir=Redir(fd, op, target, heredoc))

    def _read_heredocs(self) -> None:
        """Here-document bodies start on the line after their operator. The delimiter line is
        found through an index of the text's lines (built once), and an unquoted body is parsed
        in place: nested here-documents cost no more than flat ones."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        for heredoc in pending:
            start = self.pos
            end, after = self._delimiter_line(heredoc, start)
            heredoc.source, heredoc.start, heredoc.end = self.text, start, end
            self.budget.spend(1)
            if not heredoc.quoted:
                saved = self.limit
                self.limit = end
                try:
                    with self.budget.nested("here-documents"):
                        self.double_quoted(heredoc.parts, heredoc=True)
                finally:
                    self.limit = saved
            self.pos = after
        self.heredocs_read += 1

    def _delimiter_line(self, heredoc: Heredoc, start: int) -> tuple[int, int]:
        """(where the body ends, where reading goes on): the first delimiter line from ``start``,
        within ``limit``; without one, the body runs to ``limit`` (bash warns).

        After a backslash-newline in an unquoted body, bash compares the joined line with the
        delimiter and dash only its first physical line. Where the two end the body on different
        lines, neither reading is safe to assume (text in an unquoted body still runs its
        ``$(...)``), so the command cannot be decided."""
        readings = ("joined", "first") if not heredoc.quoted else ("physical",)
        ends = {self._first_delimiter(heredoc, start, reading) for reading in readings}
        if len(ends) > 1:
            raise Unparseable(f"the here-document ending in '{heredoc.delimiter}' ends on a different line in bash "
                              "and in dash (a backslash before a newline)")
        return ends.pop()

    def _first_delimiter(self, heredoc: Heredoc, start: int, reading: str) -> tuple[int, int]:
        starts = self._line_index(heredoc.strip_tabs, reading).get(heredoc.delimiter, [])
        found = bisect.bisect_left(starts, start)
        if found < len(starts) and starts[found] < self.limit:
            line_start = starts[found]
            return line_start, min(self._line_ends[(reading != "physical", line_start)] + 1, self.limit)
        return self.limit, self.limit

    def _line_index(self, strip_tabs: bool, reading: str) -> dict[str, list[int]]:
        """Line text -> where such lines start, built once per text: every ``physical`` line, or
        each logical line (joined across backslash-newlines) as bash (``joined``) or dash
        (``first``: its first physical line) compares it."""
        key = (strip_tabs, reading)
        if key not in self._lines:
            index: dict[str, list[int]] = {}
            text = self.text
            logical = reading != "physical"
            position = 0
            while position <= self.n:
                start = position
                pieces: list[str] = []
                while True:
                    newline = text.find("\n", position)
                    end = self.n if newline < 0 else newline
                    line = text[position:end]
                    if logical and newline >= 0 and (len(line) - len(line.rstrip("\\"))) % 2 == 1:
                        pieces.append(line[:-1] if reading == "joined" else line)
                        position = newline + 1
                        continue
                    pieces.append(line)
                    break
                content = "".join(pieces) if reading == "joined" else pieces[0]
                index.setdefault(content.lstrip("\t") if strip_tabs else content, []).append(start)
                self._line_ends[(logical, start)] = end
                if newline < 0:
                    break
                position = newline + 1
            self.budget.spend(self.n // 4 + len(index))
            self._lines[key] = index
        return self._lines[key]
