"""Reading one word: quotes, escapes, ``$'...'``, parameters, and the nested constructs in it.

Nested constructs (``$(...)``, backticks, ``${...}``, ``$((...))``, ``<(...)``) are parsed where they
stand by calling back into the grammar, and memoised by their start position: when ``$((`` turns
out not to be arithmetic (``$((cmd) )``), the re-read as ``$(`` + subshell skips over everything
already parsed inside it, so no character is read more than twice.
"""

from __future__ import annotations

import re

from mcp_bridge.policy.limits import Budget, Unparseable
from mcp_bridge.policy.syntax import Arith, CmdSub, Heredoc, Lit, Param, Part, Script, Word

BREAK = frozenset(" \t\n;&|()<>")
_PLAIN_RE = re.compile(r"[^ \t\n;&|()<>'\"\\$`]+")
_COND_PLAIN_RE = re.compile(r"[^ \t\n'\"\\$`]+")  # inside [[ ]], ( ) < > & | are part of words
_DQ_RUN = re.compile(r'[^"\\$`]+')
_HEREDOC_RUN = re.compile(r"[^\\$`]+")
_BQ_RUN = re.compile(r"[^`\\]+")
_ARITH_RUN = re.compile(r"[^()$`\"'\\]+")
_BRACED_RUN = re.compile(r"[^\\'\"$`{}]+")
_ANSI_BODY = re.compile(r"(?:[^'\\]|\\.)*'", re.DOTALL)
_ANSI_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|u[0-9a-fA-F]{1,4}|U[0-9a-fA-F]{1,8}|[0-7]{1,3}|c.|.)", re.DOTALL)
_ANSI_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f",
                "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED_NAME_RE = re.compile(r"[#!]?(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])")
_SPECIAL_PARAMS = frozenset("0123456789@*#?$!-")
_ARRAY_START = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=$")
_ASSIGNING = re.compile(r"(?<![=!<>])=(?!=)|\+\+|--")


def decode_ansi_c(body: str) -> str:
    """The value of ``$'...'``: C escapes, ``\\u``/``\\U`` code points, ``\\cX``; a NUL ends it."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        head = code[0]
        if head in "xuU" and len(code) > 1:
            value = int(code[1:], 16)
            return chr(value) if value <= 0x10FFFF else match.group(0)
        if head in "01234567":
            return chr(int(code, 8))
        if head == "c" and len(code) == 2:
            return chr(ord(code[1]) & 0x1F)
        return _ANSI_SIMPLE.get(code, "\\" + code)

    return _ANSI_ESCAPE.sub(one, body).split("\x00", 1)[0]


class WordReader:
    """Character-level reading of words; :class:`~mcp_bridge.policy.lexer.Lexer` adds tokens."""

    text: str
    n: int
    pos: int
    budget: Budget
    pending: list[Heredoc]
    heredocs_read: int
    limit: int  # where the here-document body being read in place ends
    dash: bool
    paren_match: dict[int, int]  # `(` -> its `)`, as arithmetic scans found them
    memo: dict[tuple[str, int], tuple[object, int]]

    def parse_until_paren(self) -> Script:  # pragma: no cover - the Parser provides it
        raise NotImplementedError

    def parse_text(self, text: str) -> Script:  # pragma: no cover - the Parser provides it
        raise NotImplementedError

    def skip_blanks(self) -> None:  # pragma: no cover - the Lexer provides it
        raise NotImplementedError

    # -- words -----------------------------------------------------------------------------

    def read_word(self, cond: bool = False) -> Word:
        text, n = self.text, self.n
        start = self.pos
        parts: list[Part] = []
        plain = _COND_PLAIN_RE if cond else _PLAIN_RE
        count = 0  # characters read here; nested constructs charge their own
        while self.pos < n:
            char = text[self.pos]
            count += 1
            if char in " \t\n" or (not cond and char in BREAK):
                if not cond and char in "<>" and self.pos == start and text.startswith("(", self.pos + 1):
                    parts.append(self._substitution(char + "(", self.pos))
                    continue
                if char == "(" and not cond and len(parts) == 1 and isinstance(parts[0], Lit) \
                        and not parts[0].quoted and _ARRAY_START.match(parts[0].text):
                    self._array(parts)
                    continue
                break
            if char == "\\":
                following = text[self.pos + 1:self.pos + 2]
                if following == "\n":
                    self.pos += 2
                    continue
                parts.append(Lit(following or "\\", True))
                self.pos += 2 if following else 1
            elif char == "'":
                end = text.find("'", self.pos + 1)
                if end < 0:
                    raise Unparseable(f"the single quote at character {self.pos + 1} is never closed")
                parts.append(Lit(text[self.pos + 1:end], True))
                count += end - self.pos
                self.pos = end + 1
            elif char == '"':
                self.pos += 1
                self.double_quoted(parts)
            elif char == "$":
                self._dollar(parts, in_quotes=False)
            elif char == "`":
                parts.append(self._backtick())
            else:
                match = plain.match(text, self.pos)
                if match is None:  # a lone \r and the like
                    parts.append(Lit(char))
                    self.pos += 1
                else:
                    parts.append(Lit(match.group()))
                    count += match.end() - self.pos
                    self.pos = match.end()
        if self.pos == start:
            raise Unparseable(f"unexpected character {text[start:start + 1]!r} at character {start + 1}")
        self.budget.spend(count)
        return Word(parts, text, start, self.pos)

    def _array(self, parts: list[Part]) -> None:
        """``name=(a b $(c))``: the elements' expansions run; the value is an array (not static)."""
        self.pos += 1
        with self.budget.nested("array assignments"):
            while True:
                while self.pos < self.n and self.text[self.pos] in " \t\r\n":
                    self.pos += 1
                if self.pos >= self.n:
                    raise Unparseable("an array assignment '=(' is never closed with ')'")
                if self.text[self.pos] == ")":
                    self.pos += 1
                    break
                if self.text[self.pos] == "#":
                    self.skip_blanks()
                    continue
                element = self.read_word()
                parts.extend(p for p in element.parts if not isinstance(p, Lit))
        parts.append(Param("(array)", plain=False))

    def double_quoted(self, parts: list[Part], heredoc: bool = False) -> None:
        """The inside of "...", or (``heredoc``) an unquoted here-document body read in place,
        up to ``limit`` (the start of its delimiter line)."""
        text = self.text
        n = self.limit if heredoc else self.n
        opened = self.pos
        run = _HEREDOC_RUN if heredoc else _DQ_RUN
        count = 0
        while self.pos < n:
            char = text[self.pos]
            count += 1
            if char == '"' and not heredoc:
                self.pos += 1
                self.budget.spend(count)
                return
            if char == "\\":
                following = text[self.pos + 1:self.pos + 2]
                if following == "\n":
                    self.pos += 2
                elif following in ("$", "`", "\\") or (following == '"' and not heredoc):
                    parts.append(Lit(following, True))
                    self.pos += 2
                else:
                    parts.append(Lit("\\", True))
                    self.pos += 1
            elif char == "$":
                self._dollar(parts, in_quotes=True)
            elif char == "`":
                parts.append(self._backtick())
            else:
                match = run.match(text, self.pos, n)
                assert match is not None
                parts.append(Lit(match.group(), True))
                count += match.end() - self.pos
                self.pos = match.end()
            if self.pos > n:
                raise Unparseable(f"an expansion in the here-document starting at character {opened + 1} "
                                  "runs past the end of the here-document")
        self.budget.spend(count)
        if not heredoc:
            raise Unparseable(f"the double quote at character {opened} is never closed")

    def _dollar(self, parts: list[Part], in_quotes: bool) -> None:
        text, start = self.text, self.pos
        following = text[start + 1:start + 2]
        if following == "(":
            if text.startswith("(", start + 2):
                arith = self.arithmetic(start, start + 3)
                if arith is not None:
                    parts.append(arith)
                    return
            parts.append(self._substitution("$(", start))
        elif following == "{":
            parts.append(self._braced(start, in_quotes))
        elif following == "'" and not in_quotes and not self.dash:
            match = _ANSI_BODY.match(text, start + 2)
            if match is None:
                raise Unparseable(f"the $' quote at character {start + 1} is never closed")
            if text.find("'", start + 2) != match.end() - 1:  # dash has no $'...': its quote ends earlier
                raise Unparseable(f"the $'...' quote at character {start + 1} ends at a different place in bash "
                                  "and in dash (an escaped quote inside it)")
            parts.append(Lit(decode_ansi_c(text[start + 2:match.end() - 1]), True))
            self.pos = match.end()
        elif following == '"' and not in_quotes:
            self.pos = start + 2  # $"..." is a translatable "..."
            self.double_quoted(parts)
        elif (match := _NAME_RE.match(text, start + 1)) is not None:
            parts.append(Param(match.group(), quoted=in_quotes))
            self.pos = match.end()
        elif following and following in _SPECIAL_PARAMS:
            parts.append(Param(following, quoted=in_quotes))
            self.pos = start + 2
        else:
            parts.append(Lit("$", in_quotes))
            self.pos = start + 1

    def _substitution(self, kind: str, start: int) -> CmdSub:
        """``$(...)``, ``<(...)``, ``>(...)`` starting at ``start``; memoised by position."""
        key = (kind, start)
        if key in self.memo:
            node, self.pos = self.memo[key]
            assert isinstance(node, CmdSub)
            return node
        self.pos = start + 2
        with self.budget.nested("command substitutions"):
            body = self.parse_until_paren()
        node = CmdSub(body, kind)
        self.memo[key] = (node, self.pos)
        return node

    def arithmetic(self, key_pos: int, body_pos: int) -> Arith | None:
        """``$((...))``/``((...))`` whose body starts at ``body_pos``; None when the parentheses
        show it was a command substitution or subshell after all (then ``pos`` is ``key_pos``)."""
        key = ("((", key_pos)
        if key in self.memo:
            node, end = self.memo[key]
            if node is None:
                self.pos = key_pos
                return None
            self.pos = end
            assert isinstance(node, Arith)
            return node
        first, second = body_pos - 2, body_pos - 1
        if first in self.paren_match and second in self.paren_match and \
                self.paren_match[first] != self.paren_match[second] + 1:
            # an earlier arithmetic scan already matched these parentheses: not `))`, so no arithmetic
            self.memo[key] = (None, key_pos)
            self.pos = key_pos
            return None
        before = (len(self.pending), self.heredocs_read)
        self.pos = body_pos
        with self.budget.nested("arithmetic"):
            node = self._arith_body(second)
        self.memo[key] = (node, self.pos)
        if node is None:
            if (len(self.pending), self.heredocs_read) != before:
                raise Unparseable(f"the '((' at character {key_pos + 1} mixes arithmetic and here-documents")
            self.pos = key_pos
        return node

    def _arith_body(self, opened: int) -> Arith | None:
        """Scan to the ``)`` matching ``opened``. Every parenthesis matched on the way is recorded
        in ``paren_match``: a scan from a given ``(`` always goes the same way, so a later attempt
        at an inner ``((`` is decided from the record instead of scanning again."""
        text, n = self.text, self.n
        parts: list[Part] = []
        open_parens: list[int] = []
        assigns = False
        while self.pos < n:
            char = text[self.pos]
            self.budget.spend(1)
            if char == "(":
                open_parens.append(self.pos)
                self.pos += 1
            elif char == ")":
                if not open_parens:
                    self.paren_match[opened] = self.pos
                    if text.startswith(")", self.pos + 1):
                        self.paren_match[opened - 1] = self.pos + 1
                        self.pos += 2
                        return Arith(parts, assigns)
                    return None
                self.paren_match[open_parens.pop()] = self.pos
                self.pos += 1
            elif char == "$":
                self._dollar(parts, in_quotes=True)
            elif char == "`":
                parts.append(self._backtick())
            elif char == '"':
                self.pos += 1
                self.double_quoted(parts)
            elif char == "'":
                end = text.find("'", self.pos + 1)
                if end < 0:
                    raise Unparseable(f"the single quote at character {self.pos + 1} is never closed")
                self.pos = end + 1
            elif char == "\\":
                self.pos += 2
            else:
                match = _ARITH_RUN.match(text, self.pos)
                assert match is not None
                assigns = assigns or _ASSIGNING.search(match.group()) is not None
                self.budget.spend(match.end() - self.pos)
                self.pos = match.end()
        raise Unparseable("an arithmetic '$((' or '((' is never closed with '))'")

    def _braced(self, start: int, in_quotes: bool) -> Param:
        key = ("${", start)
        if key in self.memo:
            node, self.pos = self.memo[key]
            assert isinstance(node, Param)
            return node
        text, n = self.text, self.n
        match = _BRACED_NAME_RE.match(text, start + 2)
        name = match.group() if match else ""
        self.pos = match.end() if match else start + 2
        if text.startswith("}", self.pos):
            self.pos += 1
            node = Param(name, braced=True, plain=name[:1] not in ("#", "!"), quoted=in_quotes)
            self.memo[key] = (node, self.pos)
            return node
        assigns = text.startswith((":=", "="), self.pos)
        inner: list[Part] = []
        depth = 0
        with self.budget.nested("${...}"):
            while self.pos < n:
                char = text[self.pos]
                self.budget.spend(1)
                if char == "\\":
                    self.pos += 2
                elif char == "'" and not in_quotes:
                    end = text.find("'", self.pos + 1)
                    if end < 0:
                        raise Unparseable(f"the single quote at character {self.pos + 1} is never closed")
                    self.pos = end + 1
                elif char == '"':
                    self.pos += 1
                    self.double_quoted(inner)
                elif char == "$":
                    self._dollar(inner, in_quotes=True)
                elif char == "`":
                    inner.append(self._backtick())
                elif char == "{":
                    depth += 1
                    self.pos += 1
                elif char == "}":
                    self.pos += 1
                    if depth == 0:
                        break
                    depth -= 1
                else:
                    found = _BRACED_RUN.match(text, self.pos)
                    assert found is not None
                    self.budget.spend(found.end() - self.pos)
                    self.pos = found.end()
            else:
                raise Unparseable(f"the '${{' at character {start + 1} is never closed with '}}'")
        node = Param(name.lstrip("#!") or name, braced=True, plain=False, assigns=assigns, inner=inner,
                     quoted=in_quotes)
        self.memo[key] = (node, self.pos)
        return node

    def _backtick(self) -> CmdSub:
        start = self.pos
        key = ("`", start)
        if key in self.memo:
            node, self.pos = self.memo[key]
            assert isinstance(node, CmdSub)
            return node
        text, n = self.text, self.n
        chunks: list[str] = []
        index = start + 1
        while index < n:
            char = text[index]
            if char == "`":
                break
            if char == "\\" and index + 1 < n:
                following = text[index + 1]
                chunks.append(following if following in "$`\\" else "\\" + following)
                index += 2
                continue
            match = _BQ_RUN.match(text, index)
            if match is None:  # a backslash at the very end
                chunks.append(char)
                index += 1
                continue
            chunks.append(match.group())
            index = match.end()
        else:
            raise Unparseable(f"the backtick at character {start + 1} is never closed")
        self.budget.spend(index - start)
        with self.budget.nested("backticks"):
            body = self.parse_text("".join(chunks))
        self.pos = index + 1
        node = CmdSub(body, "`")
        self.memo[key] = (node, self.pos)
        return node
