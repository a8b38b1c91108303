"""One walk over the tree: every command, in the order the shell would meet it.

The walk keeps what a shell keeps: the working directory (``cd``, scoped to subshells,
pipelines and substitutions), variables with static values (``X=/tmp/x``, a ``for`` loop over
static words; dropped when a loop, a condition, a function call or ``read`` may change them),
functions defined so far, and, across the whole command, symlinks it made. Each simple
command is expanded, unwrapped (``sudo``, ``env``...), checked by the rule families, judged
against the user's rules (:meth:`Walk.judge`), and then the code it hands on is walked:
substitutions, ``bash -c`` strings, ``find -exec`` commands, text piped into a shell.

The first denial ends the walk (:class:`Denied`); confirms are remembered and the walk goes on,
since a later command may still be denied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mcp_bridge.policy import streams
from mcp_bridge.policy.base import Finding, confirm, deny
from mcp_bridge.policy.commands import SimpleRunner
from mcp_bridge.policy.config import PolicyRule, UserRules
from mcp_bridge.policy.limits import AnalysisStop, Budget
from mcp_bridge.policy.parser import Parser
from mcp_bridge.policy.paths import START, UNKNOWN, Cwd
from mcp_bridge.policy.streams import Input
from mcp_bridge.policy.syntax import (
    AndOr,
    Arith,
    ArithCmd,
    Case,
    CmdSub,
    Command,
    Cond,
    Coproc,
    FuncDef,
    Group,
    If,
    Loop,
    Param,
    Part,
    Pipeline,
    Script,
    Simple,
)
from mcp_bridge.policy.words import Arg, Env, expand

MAX_LOOP_VALUES = 8
_CHANGES_CWD = re.compile(r"\b(cd|pushd|popd|source)\b|(^|[;&|\s(])\.\s")


def _reassigns(variable: str) -> re.Pattern[str]:
    name = re.escape(variable)
    return re.compile(rf"\b{name}\+?=|\b(read|mapfile|readarray|declare|local|typeset|export|unset|let|eval|"
                      rf"source|getopts|shift|set)\b|\(\(|printf\s+-v|\${{{name}:?=|(^|\s)\.\s")


@dataclass
class State:
    cwd: Cwd = START
    env: Env = field(default_factory=Env)

    def copy(self) -> State:
        return State(self.cwd, self.env.copy())


class Denied(Exception):
    def __init__(self, finding: Finding, text: str, user_rule: PolicyRule | None = None) -> None:
        super().__init__(finding.what)
        self.finding = finding
        self.text = text
        self.user_rule = user_rule


@dataclass
class Frame:
    """A function being defined: does its body call itself, and in a pipe or the background?"""

    name: str
    calls_itself: bool = False
    spawns: bool = False


class Walk:
    def __init__(self, rules: UserRules, budget: Budget) -> None:
        self.rules = rules
        self.budget = budget
        self.confirmed: tuple[Finding, str] | None = None
        self.lifted: list[tuple[PolicyRule, Finding, str]] = []  # built-in findings an allow rule lifted
        self.allowed_by: list[tuple[PolicyRule, str]] = []  # commands an allow rule let through
        self.functions: dict[str, FuncDef] = {}
        self.links: dict[str, tuple[str | None, bool]] = {}
        self.written: set[str] = set()  # places of files this command writes
        self.frames: list[Frame] = []
        self.runner = SimpleRunner(self)

    # -- lists ---------------------------------------------------------------------------

    def script(self, node: Script, state: State, stdin: Input | None = None) -> None:
        for and_or, terminator in node.items:
            if terminator == "&":
                self._spawned()
                self.and_or(and_or, state.copy(), stdin)
            else:
                self.and_or(and_or, state, stdin)

    def and_or(self, node: AndOr, state: State, stdin: Input | None) -> None:
        self.pipeline(node.pipelines[0], state, stdin)
        for pipeline in node.pipelines[1:]:
            before = state.copy()
            self.pipeline(pipeline, state, stdin)
            self._merge(state, before)

    def pipeline(self, node: Pipeline, state: State, stdin: Input | None) -> None:
        if len(node.commands) == 1:
            self.command(node.commands[0], state, stdin)
            return
        self._spawned()
        for command in node.commands:  # every part of a pipeline runs in a subshell
            part_state = state.copy()
            self.command(command, part_state, stdin)
            stdin = streams.output_of(self, command, part_state, stdin)

    def _spawned(self) -> None:
        for frame in self.frames:
            frame.spawns = True

    @staticmethod
    def _merge(state: State, before: State) -> None:
        """After code that may or may not run: what it changed is no longer known."""
        if state.cwd != before.cwd:
            state.cwd = UNKNOWN
        changed = {k for k, v in state.env.bindings.items() if before.env.bindings.get(k) != v}
        changed |= set(before.env.bindings) - set(state.env.bindings)
        for name in changed:
            state.env.bindings.pop(name, None)
        state.env.home_tainted |= before.env.home_tainted

    @staticmethod
    def join(state: State, branches: list[State]) -> None:
        """After one of several branches ran: keep what all of them agree on."""
        state.cwd = branches[0].cwd if len({b.cwd for b in branches}) == 1 else UNKNOWN
        first = branches[0].env.bindings
        state.env.bindings = {k: v for k, v in first.items() if all(b.env.bindings.get(k) == v for b in branches)}
        state.env.home_tainted = any(b.env.home_tainted for b in branches)

    # -- commands ----------------------------------------------------------------------------

    def command(self, node: Command, state: State, stdin: Input | None) -> None:
        self.budget.spend(1)
        if isinstance(node, Simple):
            self.runner.simple(node, state, stdin)
            return
        redirs = getattr(node, "redirs", [])
        if redirs:
            findings: list[Finding] = []
            stdin = streams.redirections(self, redirs, state, findings, stdin)
            text = " ".join(f"{r.fd or ''}{r.op} {r.target.raw if r.target else ''}" for r in redirs)
            self.judge([], findings, text, text)
        if isinstance(node, Group):
            self.script(node.body, state.copy() if node.subshell else state, stdin)
        elif isinstance(node, If):
            branches: list[State] = []
            for condition, body in node.clauses:  # each branch starts where its condition left off
                self.script(condition, state, stdin)
                branches.append(state.copy())
                self.script(body, branches[-1], stdin)
            branches.append(state.copy())
            if node.otherwise is not None:
                self.script(node.otherwise, branches[-1], stdin)
            self.join(state, branches)
        elif isinstance(node, Loop):
            self._loop(node, state, stdin)
        elif isinstance(node, Case):
            self.parts(node.subject.parts, state)
            branches = []
            for patterns, body in node.arms:
                for pattern in patterns:
                    self.parts(pattern.parts, state)
                branches.append(state.copy())
                self.script(body, branches[-1], stdin)
            branches.append(state.copy())  # no pattern matched
            self.join(state, branches)
        elif isinstance(node, Cond):
            for word in node.words:
                self.parts(word.parts, state)
            self._as_dash(node.dash_text, state)
        elif isinstance(node, ArithCmd):
            self.parts([node.arith], state)
            self._as_dash(node.dash_text, state)
        elif isinstance(node, FuncDef):
            self._function(node, state)
        elif isinstance(node, Coproc):
            self._spawned()
            self.command(node.body, state.copy(), None)

    def _as_dash(self, text: str, state: State) -> None:
        """``[[ ... ]]`` and ``(( ... ))`` are bash syntax; dash (/bin/sh on Debian) reads the same
        text as ordinary commands (`[[ x && reboot ]]` runs `reboot ]]`). Walk that reading too."""
        if text:
            dash_state = state.copy()
            self.nested(text, dash_state, "dash", same_shell=True, dash=True)
            self.join(state, [state.copy(), dash_state])

    def _loop(self, node: Loop, state: State, stdin: Input | None) -> None:
        before = state.copy()
        values: tuple[Arg, ...] | None = None
        if node.words is not None:
            expanded: list[Arg] = []
            for word in node.words:
                self.parts(word.parts, state)
                expanded.extend(expand(word, state.env))
            if len(expanded) <= MAX_LOOP_VALUES and all(a.value is not None for a in expanded) and \
                    node.variable and not _reassigns(node.variable).search(node.body_text):
                values = tuple(expanded)
        if node.arith is not None:
            self.parts([node.arith], state)
        # a second pass of the body sees what the first changed: start from nothing known
        state.env.bindings.clear()
        if _CHANGES_CWD.search(node.body_text):
            state.cwd = UNKNOWN
        if node.variable and values:
            state.env.bindings[node.variable] = values
        if node.condition is not None:
            self.script(node.condition, state, stdin)
        self.script(node.body, state, stdin)
        self._merge(state, before)
        if node.variable:
            state.env.bindings.pop(node.variable, None)

    def _function(self, node: FuncDef, state: State) -> None:
        frame = Frame(node.name)
        self.frames.append(frame)
        try:  # the body runs when called, from wherever: nothing about cwd or variables is known
            body_state = State(UNKNOWN, Env(home_tainted=state.env.home_tainted))
            self.command(node.body, body_state, None)
        finally:
            self.frames.pop()
        if frame.calls_itself and frame.spawns:
            text = node.text[:200]
            self.judge([[Arg(node.name, node.name)]], [deny("fork-bomb", f"the function '{node.name}' calls "
                                                                     "itself in a pipe or in the background")],
                       text, "")
        self.functions[node.name] = node

    def call_function(self, name: str, state: State) -> None:
        for frame in self.frames:
            if frame.name == name:
                frame.calls_itself = True
        node = self.functions.get(name)
        if node is not None and _CHANGES_CWD.search(node.text):
            state.cwd = UNKNOWN
        state.env.bindings.clear()  # the function may set any variable

    # -- words -------------------------------------------------------------------------------

    def parts(self, parts: list[Part], state: State) -> None:
        """Run what a word runs while it is expanded: substitutions, assignments in ${x:=...}."""
        for part in parts:
            if isinstance(part, CmdSub):
                self.budget.spend(1)
                self.script(part.body, state.copy(), None)
            elif isinstance(part, Param):
                if part.assigns:
                    state.env.bindings.pop(part.name, None)
                    if part.name == "HOME":
                        state.env.home_tainted = True
                if part.inner:
                    self.parts(part.inner, state)
            elif isinstance(part, Arith):
                if part.assigns:
                    state.env.bindings.clear()
                self.parts(part.parts, state)

    # -- nested code ------------------------------------------------------------------------------

    def nested(self, code: str, state: State, how: str, *, same_shell: bool = False, fresh: bool = False,
               positional: list[Arg] | None = None, cwd: Cwd | None = None, dash: bool = False) -> None:
        """Walk shell code found in the command (a -c string, eval, text piped into sh)."""
        with self.budget.nested("shell strings run by other shells"):
            if same_shell:
                inner = state
            elif fresh:
                inner = State(START, Env())
            else:
                inner = state.copy()
                inner.env.bindings = {k: v for k, v in inner.env.bindings.items() if not k.isdigit()}
            if cwd is not None:
                inner.cwd = cwd
            for index, arg in enumerate(positional or []):
                if arg.value is not None:
                    inner.env.bindings[str(index)] = (arg,)
            saved = (self.links, self.functions)
            if fresh:
                self.links, self.functions = {}, {}
            items: list = []
            try:
                try:
                    Parser(code, self.budget, dash).parse_program(items)
                    problem = None
                except AnalysisStop as exc:
                    problem = exc
                self.script(Script(items), inner, None)
                if problem is not None and not dash:  # a syntax error stops dash from running the line
                    self.note(confirm(problem.rule, f"the code {how} runs cannot be parsed ({problem})"),
                              code[:200])
            finally:
                if fresh:
                    self.links, self.functions = saved

    # -- judging -----------------------------------------------------------------------------------

    def note(self, finding: Finding, text: str) -> None:
        if finding.decision == "deny":
            raise Denied(finding, text)
        if self.confirmed is None:
            self.confirmed = (finding, text)

    def judge(self, levels: list[list[Arg]], findings: list[Finding], text: str, redirect_text: str,
              needs_rule: bool = False) -> None:
        """User deny rules, then strict mode, then built-in findings unless an allow rule matches
        this very command (at any wrapper level)."""
        views = []
        for level in levels:
            argv = [a.show() for a in level]
            views.append((argv, " ".join([*argv, redirect_text]).strip()))
        if not views:
            views.append(([], redirect_text))
        rules = self.rules
        for rule in rules.deny:
            for argv, view_text in views:
                if rule.matches(argv, view_text):
                    raise Denied(deny(rule.id, rule.reason), view_text, user_rule=rule)
        allow = next((r for r in rules.allow for argv, view_text in views if r.matches(argv, view_text)), None)
        if allow is not None:
            self.lifted.extend((allow, finding, text) for finding in findings)
            if needs_rule:
                self.allowed_by.append((allow, text))
            return
        for finding in findings:  # a built-in denial keeps its own rule, in every mode
            if finding.decision == "deny":
                raise Denied(finding, text)
        if needs_rule and rules.mode == "strict":
            raise Denied(deny("strict-mode", "strict mode runs only commands an allow rule matches, and no "
                                             "allow rule matches this one"), text)
        for finding in findings:
            self.note(finding, text)
