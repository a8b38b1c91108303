"""Tokens to a tree: a recursive-descent parser for the POSIX/bash command grammar.

Lists, ``&&``/``||``, pipelines (``!``, ``time``), simple commands, ``( )`` and ``{ }``
groups, ``if``, ``while``/``until``, ``for``/``select`` (also ``for ((;;))``), ``case``,
``[[ ]]``, ``(( ))``, functions (``f() ...`` and ``function f ...``) and ``coproc``.
Reserved words count only where bash recognises them (first word of a command, unquoted),
so ``echo if`` is an echo and a ``case`` pattern ``reboot)`` is a pattern, not a command.

Every nested construct goes through :meth:`Budget.nested`, so nesting deeper than
``MAX_DEPTH`` stops with ``too-complex`` before Python's own recursion limit is near.
Anything the parser does not understand raises :class:`Unparseable`; at the top level the
commands read before the error are kept (:meth:`Parser.parse_program` fills a list as it
goes), so ``rm -rf /; echo 'oops`` is still denied for the ``rm``.

Commands may run under bash or under dash (``/bin/sh`` on Debian, which Ansible's shell module
uses). The parser follows bash; where dash reads the same text with a different extent
(``$'...'`` with an escaped quote, a here-document after a backslash-newline) it stops with
:class:`Unparseable`, and ``dash=True`` reads ``[[ ]]``/``(( ))`` spans the way dash does so
the walk can check that reading too.
"""

from __future__ import annotations

from collections.abc import Collection

from mcp_bridge.policy.lexer import Lexer, Token
from mcp_bridge.policy.limits import Budget, Unparseable
from mcp_bridge.policy.syntax import (
    AndOr,
    Arith,
    ArithCmd,
    Case,
    Command,
    Cond,
    Coproc,
    FuncDef,
    Group,
    If,
    Loop,
    Pipeline,
    Redir,
    Script,
    Simple,
    Word,
)

_COMPOUND = frozenset({"{", "if", "while", "until", "for", "select", "case", "[[", "function", "coproc"})
_MISPLACED = frozenset({"}", "then", "else", "elif", "fi", "do", "done", "esac", "]]"})
_CASE_ENDS = frozenset({";;", ";&", ";;&"})
_BASH_ONLY = frozenset({"[[", "]]", "function", "select", "coproc"})  # plain words to dash
_NONE: frozenset[str] = frozenset()


class Parser(Lexer):
    def __init__(self, text: str, budget: Budget, dash: bool = False) -> None:
        super().__init__(text, budget, dash)

    # -- entry points ----------------------------------------------------------------------

    def parse_program(self, items: list[tuple[AndOr, str]] | None = None) -> Script:
        """The whole text; complete commands are appended to ``items`` as soon as they are read."""
        script = Script(items if items is not None else [])
        self._script_into(script, _NONE, _NONE)
        token = self.peek()
        if token.kind != "eof":
            raise Unparseable(f"unexpected {token.describe()} at character {token.start + 1}")
        return script

    def parse_until_paren(self) -> Script:
        script = self.parse_script(stop_ops=(")",))
        self._expect_op(")")
        return script

    def parse_text(self, text: str) -> Script:
        return Parser(text, self.budget, self.dash).parse_program()

    # -- lists ------------------------------------------------------------------------------

    def parse_script(self, stop_words: Collection[str] = _NONE, stop_ops: Collection[str] = _NONE) -> Script:
        script = Script()
        self._script_into(script, stop_words, stop_ops)
        return script

    def _script_into(self, script: Script, stop_words: Collection[str], stop_ops: Collection[str]) -> None:
        while True:
            token = self.peek()
            if token.kind == "op" and token.value == "\n":
                self.take()
                continue
            if token.kind == "eof" or self._is_stop(token, stop_words, stop_ops):
                return
            if token.kind == "op" and token.value != "(":
                raise Unparseable(f"unexpected {token.describe()} at character {token.start + 1}")
            node = self._and_or()
            token = self.peek()
            if token.kind == "op" and token.value in (";", "&", "\n"):
                self.take()
                script.items.append((node, token.value))
                continue
            script.items.append((node, ""))
            if token.kind == "eof" or self._is_stop(token, stop_words, stop_ops):
                return
            raise Unparseable(f"unexpected {token.describe()} at character {token.start + 1}")

    @staticmethod
    def _is_stop(token: Token, stop_words: Collection[str], stop_ops: Collection[str]) -> bool:
        if token.kind == "op":
            return token.value in stop_ops
        return token.kind == "word" and token.word is not None and token.word.literal() in stop_words

    def _and_or(self) -> AndOr:
        pipelines = [self._pipeline()]
        ops: list[str] = []
        while (token := self.peek()).kind == "op" and token.value in ("&&", "||"):
            self.take()
            ops.append(token.value)
            self._skip_newlines()
            pipelines.append(self._pipeline())
        return AndOr(pipelines, ops)

    def _pipeline(self) -> Pipeline:
        negated = False
        while (token := self.peek()).kind == "word" and token.word is not None:
            literal = token.word.literal()
            if literal == "!":
                negated = not negated
            elif literal == "time":
                self.take()
                if (option := self.peek()).kind == "word" and option.word and option.word.literal() in ("-p", "--"):
                    self.take()
                continue
            else:
                break
            self.take()
        commands = [self._command()]
        while (token := self.peek()).kind == "op" and token.value in ("|", "|&"):
            self.take()
            self._skip_newlines()
            commands.append(self._command())
        self.budget.spend(len(commands))
        return Pipeline(commands, negated)

    # -- commands ---------------------------------------------------------------------------

    def _command(self) -> Command:
        token = self.peek()
        if token.kind == "op":
            if token.value != "(":
                raise Unparseable(f"unexpected {token.describe()} at character {token.start + 1}")
            self._peeked = None
            if self.text.startswith("((", token.start) and not self.dash:
                arith = self.arithmetic(token.start, token.start + 2)
                if arith is not None:
                    span = self.text[token.start:self.pos]
                    return ArithCmd(arith, self._redirs(), dash_text=span)
            self.pos = token.start + 1
            with self.budget.nested("subshells"):
                body = self.parse_script(stop_ops=(")",))
                self._expect_op(")")
            return Group(body, True, self._redirs())
        literal = token.word.literal() if token.kind == "word" and token.word else None
        if self.dash and literal in _BASH_ONLY:
            return self._simple()
        if literal in _COMPOUND:
            with self.budget.nested(f"'{literal}' blocks"):
                return self._compound(literal)
        if literal in _MISPLACED:
            raise Unparseable(f"unexpected '{literal}' at character {token.start + 1}")
        return self._simple()

    def _compound(self, keyword: str | None) -> Command:
        self.take()
        if keyword == "{":
            body = self.parse_script(stop_words=("}",))
            self._expect_word("}")
            return Group(body, False, self._redirs())
        if keyword == "if":
            return self._if()
        if keyword in ("while", "until"):
            condition = self.parse_script(stop_words=("do",))
            start = self.pos
            body = self._do_body()
            return Loop(keyword, body, condition=condition, body_text=self.text[start:self.pos], redirs=self._redirs())
        if keyword in ("for", "select"):
            return self._for(keyword)
        if keyword == "case":
            return self._case()
        if keyword == "[[":
            return self._cond(self.pos - 2)
        if keyword == "function":
            name = self._take_word("a function name")
            if (token := self.peek()).kind == "op" and token.value == "(":
                self.take()
                self._expect_op(")")
            return self._function_body(name.literal() or name.raw, name.start)
        return self._coproc()

    def _simple(self, first: Word | None = None) -> Command:
        words: list[Word] = [first] if first else []
        redirs: list[Redir] = []
        start = first.start if first else self.peek().start
        while True:
            token = self.peek()
            if token.kind == "word" and token.word is not None:
                self.take()
                words.append(token.word)
            elif token.kind == "redir" and token.redir is not None:
                self.take()
                redirs.append(token.redir)
            elif token.kind == "op" and token.value == "(" and len(words) == 1 and not redirs:
                self.take()
                self._expect_op(")")
                return self._function_body(words[0].literal() or words[0].raw, words[0].start)
            else:
                break
        if not words and not redirs:
            raise Unparseable(f"expected a command at character {start + 1}")
        return Simple(words, redirs, start, self.pos)

    def _function_body(self, name: str, start: int) -> FuncDef:
        self._skip_newlines()
        with self.budget.nested("functions"):
            body = self._command()
        return FuncDef(name, body, self.text[start:self.pos])

    def _if(self) -> If:
        clauses: list[tuple[Script, Script]] = []
        otherwise = None
        while True:
            condition = self.parse_script(stop_words=("then",))
            self._expect_word("then")
            body = self.parse_script(stop_words=("elif", "else", "fi"))
            clauses.append((condition, body))
            keyword = self.take()
            literal = keyword.word.literal() if keyword.word else None
            if literal == "elif":
                continue
            if literal == "else":
                otherwise = self.parse_script(stop_words=("fi",))
                self._expect_word("fi")
            elif literal != "fi":
                raise Unparseable(f"'if' without 'fi': found {keyword.describe()}")
            return If(clauses, otherwise, self._redirs())

    def _do_body(self) -> Script:
        self._skip_newlines()
        token = self.take()
        literal = token.word.literal() if token.word else None
        if literal == "do":
            body = self.parse_script(stop_words=("done",))
            self._expect_word("done")
        elif literal == "{":
            body = self.parse_script(stop_words=("}",))
            self._expect_word("}")
        else:
            raise Unparseable(f"expected 'do' but found {token.describe()}")
        return body

    def _for(self, keyword: str) -> Loop:
        self.skip_blanks()
        arith: Arith | None = None
        variable: str | None = None
        words: list[Word] | None = None
        if self.text.startswith("((", self.pos):
            arith = self.arithmetic(self.pos, self.pos + 2)
            if arith is None:
                raise Unparseable("'for ((' is not closed with '))'")
        else:
            name = self._take_word("a loop variable")
            variable = name.literal() or name.raw
            self._skip_newlines()
            token = self.peek()
            if token.kind == "word" and token.word and token.word.literal() == "in":
                self.take()
                words = []
                while (token := self.peek()).kind == "word" and token.word is not None:
                    words.append(self.take().word)  # type: ignore[arg-type]
        token = self.peek()
        if token.kind == "op" and token.value in (";", "\n"):
            self.take()
        start = self.pos
        body = self._do_body()
        return Loop(keyword, body, variable=variable, words=words, arith=arith,
                    body_text=self.text[start:self.pos], redirs=self._redirs())

    def _case(self) -> Case:
        subject = self._take_word("the word after 'case'")
        self._skip_newlines()
        self._expect_word("in")
        arms: list[tuple[list[Word], Script]] = []
        while True:
            self._skip_newlines()
            token = self.peek()
            if token.kind == "word" and token.word and token.word.literal() == "esac":
                self.take()
                break
            if token.kind == "op" and token.value == "(":
                self.take()
            patterns = [self._take_word("a case pattern")]
            while (token := self.peek()).kind == "op" and token.value == "|":
                self.take()
                patterns.append(self._take_word("a case pattern"))
            self._expect_op(")")
            body = self.parse_script(stop_words=("esac",), stop_ops=_CASE_ENDS)
            arms.append((patterns, body))
            if (token := self.peek()).kind == "op" and token.value in _CASE_ENDS:
                self.take()
        return Case(subject, arms, self._redirs())

    def _cond(self, start: int) -> Cond:
        words: list[Word] = []
        while True:
            while self.pos < self.n and self.text[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos >= self.n:
                raise Unparseable("'[[' is never closed with ']]'")
            if self.text.startswith("]]", self.pos):
                self.pos += 2
                break
            words.append(self.read_word(cond=True))
        span = self.text[start:self.pos]
        return Cond(words, self._redirs(), dash_text=span)

    def _coproc(self) -> Coproc:
        token = self.peek()
        literal = token.word.literal() if token.kind == "word" and token.word else None
        if token.kind != "word" or literal in _COMPOUND:
            return Coproc(self._command())
        first = self.take().word
        assert first is not None
        following = self.peek()
        named = (following.kind == "op" and following.value == "(") or (
            following.kind == "word" and following.word is not None and following.word.literal() in _COMPOUND)
        return Coproc(self._command() if named else self._simple(first))

    # -- small helpers ------------------------------------------------------------------------

    def _redirs(self) -> list[Redir]:
        redirs: list[Redir] = []
        while (token := self.peek()).kind == "redir" and token.redir is not None:
            self.take()
            redirs.append(token.redir)
        return redirs

    def _skip_newlines(self) -> None:
        while (token := self.peek()).kind == "op" and token.value == "\n":
            self.take()

    def _take_word(self, what: str) -> Word:
        token = self.take()
        if token.kind != "word" or token.word is None:
            raise Unparseable(f"expected {what} but found {token.describe()}")
        return token.word

    def _expect_word(self, word: str) -> None:
        token = self.take()
        if token.kind != "word" or token.word is None or token.word.literal() != word:
            raise Unparseable(f"expected '{word}' but found {token.describe()}")

    def _expect_op(self, op: str) -> None:
        token = self.take()
        if token.kind != "op" or token.value != op:
            raise Unparseable(f"expected '{op}' but found {token.describe()}")
