"""One simple command: expand it, peel wrappers off, apply the rules, judge, then follow it.

Following a command means walking the code it hands on (a ``-c`` string, ``find -exec``, text
piped into a shell, a ``GIT_SSH_COMMAND=`` value) and applying its effects on what later
commands see (``cd``, ``ln -s``, ``mount --bind``, variables, ``source``, files it writes).
Effects are applied after the command is judged, in the order the shell would apply them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from mcp_bridge.policy import paths, sources, streams, wrappers
from mcp_bridge.policy.base import Finding, confirm
from mcp_bridge.policy.options import parse
from mcp_bridge.policy.rules import bind_mounts, check_program, program_name, symlinks_made
from mcp_bridge.policy.sources_tools import tool_code, variable_code
from mcp_bridge.policy.streams import ASSIGNMENT, Input, is_assignment, note_written, written_by_command
from mcp_bridge.policy.syntax import Lit, Simple, Word
from mcp_bridge.policy.words import Arg, expand, param_names

if TYPE_CHECKING:
    from mcp_bridge.policy.analysis import State, Walk

Actions = list[Callable[[], None]]
_CLEARS_VARIABLES = frozenset({"read", "mapfile", "readarray", "getopts", "set", "shift", "unset", "let",
                               "declare", "typeset", "local", "export", "readonly", "printf"})
_DECLARES = frozenset({"declare", "typeset", "local", "export", "readonly"})
_OUTPUT_OPTIONS = {"curl": ("-o", "--output"), "wget": ("-O", "--output-document")}


class RuleContext(streams.Context):
    """What a rule sees of the walk: the working directory and a way to queue nested code."""

    def __init__(self, walk: Walk, cwd: paths.Cwd, after: Actions, state: State) -> None:
        super().__init__(walk, cwd)
        self.after = after
        self.state = state

    def nested_argv(self, argv: list[Arg], skip_rules: bool = False) -> None:
        self.after.append(partial(self.walk.runner.run_argv, [argv], self.state.copy(), None, [],
                                  " ".join(a.show() for a in argv)[:200], "", skip_rules=skip_rules,
                                  top=False, cwd=self.cwd))


class SimpleRunner:
    def __init__(self, walk: Walk) -> None:
        self.walk = walk

    def simple(self, node: Simple, state: State, stdin: Input | None) -> None:
        walk = self.walk
        walk.budget.spend(1 + len(node.words))
        for word in node.words:
            walk.parts(word.parts, state)
        for redir in node.redirs:
            if redir.target is not None:
                walk.parts(redir.target.parts, state)
            if redir.heredoc is not None:
                walk.parts(redir.heredoc.parts, state)
        index = 0
        while index < len(node.words) and is_assignment(node.words[index]):
            index += 1
        assignments, words = node.words[:index], node.words[index:]
        findings: list[Finding] = []
        stdin = streams.redirections(walk, node.redirs, state, findings, stdin)
        redirect_text = " ".join(f"{r.fd or ''}{r.op} {r.target.raw if r.target else ''}" for r in node.redirs)
        text = " ".join([*(w.raw for w in node.words), redirect_text]).strip()[:200]
        if not words:
            walk.judge([], findings, text, redirect_text, needs_rule=any(r.op in streams.WRITES for r in node.redirs))
            for word in assignments:
                self.assign(word, state)
            return
        names = [self._assigned_name(word) for word in assignments]
        inner_state = state
        if "HOME" in names or "CDPATH" in names:
            inner_state = state.copy()
            inner_state.env.home_tainted |= "HOME" in names
        for word in assignments:  # GIT_SSH_COMMAND=... git fetch
            self._variable_code(word, state)
        multi = next((n for w in words for n in param_names(w) if len(state.env.bindings.get(n, ())) > 1), None)
        if multi is None:
            argvs = [[a for w in words for a in expand(w, state.env)]]
        else:  # one variant per value of the loop variable
            argvs = [[a for w in words for a in expand(w, state.env, (multi, i))]
                     for i in range(len(state.env.bindings[multi]))]
        self.run_argv(argvs, inner_state, stdin, findings, text, redirect_text, real_state=state,
                      cdpath="CDPATH" in names)

    def run_argv(self, argvs: list[list[Arg]], state: State, stdin: Input | None, findings: list[Finding],
                 text: str, redirect_text: str, skip_rules: bool = False, top: bool = True,
                 cwd: paths.Cwd | None = None, real_state: State | None = None, cdpath: bool = False) -> None:
        """Examine the command (each variant when a loop variable has several values), judge it,
        then apply its effects and walk what it runs."""
        findings = list(findings)
        variants: list[list[list[Arg]]] = []
        after: Actions = []
        for argv in argvs:
            levels, more, actions = self.examine(argv, state, stdin, skip_rules, top, cwd)
            variants.append(levels)
            findings += more
            after += actions
        self.walk.judge([level for levels in variants for level in levels], findings, text, redirect_text,
                        needs_rule=True)
        target = real_state or state
        if len(variants) == 1:
            self.effects(variants[0], target, cwd, top, cdpath)
        else:  # each value of the loop variable may do something else: keep what they agree on
            branches = [target.copy() for _ in variants]
            for levels, branch in zip(variants, branches, strict=True):
                self.effects(levels, branch, cwd, top, cdpath)
            self.walk.join(target, branches)
        for action in after:
            action()

    def examine(self, argv: list[Arg], state: State, stdin: Input | None, skip_rules: bool, top: bool,
                cwd: paths.Cwd | None) -> tuple[list[list[Arg]], list[Finding], Actions]:
        walk = self.walk
        levels: list[list[Arg]] = []
        findings: list[Finding] = []
        after: Actions = []
        cwd = cwd or state.cwd
        current = argv
        function_call_possible = top
        for _ in range(16):
            levels.append(current)
            if not current:
                break
            program = current[0]
            if program.value is None or program.glob:
                why = program.why or f"'{program.raw}' is a pattern the shell matches against files at run time"
                rule = "dynamic-program" if program.rule == "dynamic-target" else program.rule
                findings.append(Finding("confirm", rule, f"the program name is only known at run time: {why}"))
                break
            if function_call_possible and (program.value in walk.functions
                                           or any(frame.name == program.value for frame in walk.frames)):
                after.append(partial(walk.call_function, program.value, state))
                break
            function_call_possible = False
            if "/" in program.value and written_by_command(walk, cwd, program.value):
                findings.append(confirm("code-from-elsewhere", f"'{program.value}' is a file this command "
                                                               "writes, so what it runs is not in the command"))
            name = program_name(program.value)
            args = current[1:]
            if name == "parallel":
                self._parallel(args, state, findings, after, cwd)
                break
            unwrapped = wrappers.unwrap(name, args)
            if unwrapped is not None:
                if unwrapped.uncertain is not None:
                    findings.append(confirm("dynamic-program", f"'{name}' has an argument only known at run time "
                                                               "where its options are, so what it runs is uncertain"))
                if unwrapped.no_run:
                    break
                if unwrapped.cwd is not None:
                    cwd = self.new_cwd(unwrapped.cwd, cwd)
                if "HOME" in unwrapped.assigns:
                    state = state.copy()
                    state.env.home_tainted = True
                for assigned in unwrapped.variables:
                    if (carried := variable_code(*assigned)) is not None:
                        self._queue_code(carried[0], carried[1], state, findings, after, cwd)
                if unwrapped.script is not None:
                    self._queue_code(unwrapped.script, name, state, findings, after, cwd)
                    break
                if unwrapped.stdin_shell:
                    self._stdin_code(sources.CodeRun(stdin=name), stdin, state, findings, after, cwd)
                    break
                if not unwrapped.argv:
                    break
                current = unwrapped.argv
                continue
            context = RuleContext(walk, cwd, after, state)
            if not skip_rules and (finding := check_program(name, args, context)) is not None:
                findings.append(finding)
            for code in (sources.code_of(name, args), tool_code(name, args)):
                if code is not None:
                    self._follow_code(code, state, stdin, findings, after, cwd, context)
            break
        return levels, findings, after

    def _follow_code(self, code: sources.CodeRun, state: State, stdin: Input | None, findings: list[Finding],
                     after: Actions, cwd: paths.Cwd, context: RuleContext) -> None:
        findings.extend(code.findings)
        for script, how in code.scripts:
            assert script.value is not None
            after.append(partial(self.walk.nested, script.value, state, how, same_shell=code.same_shell,
                                 fresh=code.fresh, positional=code.positional, cwd=cwd))
        for file in code.files:
            if file.value is not None and written_by_command(self.walk, cwd, file.value):
                findings.append(confirm("code-from-elsewhere", f"'{file.value}' is a file this command writes, "
                                                               "then runs as code the policy has not seen"))
        if code.argv:
            context.nested_argv(code.argv)
        self._stdin_code(code, stdin, state, findings, after, cwd)

    def _queue_code(self, code: Arg, how: str, state: State, findings: list[Finding], after: Actions,
                    cwd: paths.Cwd) -> None:
        if code.value is None:
            findings.append(confirm("code-from-elsewhere", f"{how} runs shell code only known at run time: "
                                                           f"{code.why}"))
        else:
            after.append(partial(self.walk.nested, code.value, state, how, cwd=cwd))

    def _stdin_code(self, code: sources.CodeRun, stdin: Input | None, state: State, findings: list[Finding],
                    after: Actions, cwd: paths.Cwd) -> None:
        """A program that reads code on standard input: judge what the command line feeds it."""
        if not code.stdin:
            return
        if stdin is None:
            findings.append(confirm("code-from-elsewhere", f"{code.stdin} runs code read from its standard "
                                                           "input, which the command line does not show"))
        elif stdin.kind == "file":
            if stdin.key in self.walk.written:
                findings.append(confirm("code-from-elsewhere", f"{code.stdin} runs '{stdin.how}', a file this "
                                                               "command writes"))
        elif stdin.kind == "unknown":
            findings.append(confirm("code-from-elsewhere", f"{code.stdin} runs code read from {stdin.how}"))
        elif code.stdin_is_shell:
            after.append(partial(self.walk.nested, stdin.text, state, f"{code.stdin} (read from standard input)",
                                 fresh=code.fresh, cwd=cwd))
        else:
            checked = sources.CodeRun()
            sources.risky_code(stdin.text, code.stdin, checked)
            findings.extend(checked.findings)

    def _parallel(self, args: list[Arg], state: State, findings: list[Finding], after: Actions,
                  cwd: paths.Cwd) -> None:
        template, inputs, from_stdin = wrappers.parallel_template(args)
        if template is None and from_stdin:
            findings.append(confirm("code-from-elsewhere", "parallel runs commands read from its standard input"))
        for script in [template] if template is not None else inputs:
            self._queue_code(script, "parallel", state, findings, after, cwd)

    # -- effects on later commands ----------------------------------------------------------------

    def effects(self, levels: list[list[Arg]], state: State, cwd: paths.Cwd | None, top: bool,
                cdpath: bool) -> None:
        base = cwd or state.cwd
        direct = [level for level in levels if level and level[0].value is not None]
        for level in direct:  # links, mounts and written files change the filesystem, whoever runs them
            self._filesystem(program_name(level[0].value or ""), level[1:], base)
        if not top:
            return
        names = [program_name(level[0].value or "") for level in direct]
        shell_level = 0
        while shell_level < len(names) - 1 and names[shell_level] in ("builtin", "command"):
            shell_level += 1
        name = names[shell_level] if names else ""
        args = direct[shell_level][1:] if direct else []
        if name in ("cd", "pushd", "popd"):
            state.cwd = self._cd(name, args, state, cdpath)
        elif name in ("source", "."):
            state.cwd = paths.UNKNOWN
            state.env.bindings.clear()
        elif name in _CLEARS_VARIABLES:
            state.env.bindings.clear()
            if name in _DECLARES:
                for arg in args:
                    if arg.value is None:
                        state.env.home_tainted = True  # `export "$x"` may set HOME
                    elif (match := ASSIGNMENT.match(arg.value)) is not None:
                        value = Arg(arg.value[match.end():], arg.raw)
                        self._bind(match.group(1), value, state)
                        if (carried := variable_code(match.group(1), value)) is not None:
                            self.walk.nested(carried[0].value or "", state, carried[1])
            if name == "unset" or (name == "read" and any(a.value == "HOME" for a in args)):
                state.env.home_tainted |= any(a.value in ("HOME", None) for a in args)

    def _filesystem(self, name: str, args: list[Arg], cwd: paths.Cwd) -> None:
        walk = self.walk
        made = symlinks_made(args) if name == "ln" else (bind_mounts(args) if name == "mount" else None)
        for link, target in made or []:
            if link.value is not None:
                place = paths.resolve(link.value, cwd, walk.links, follow_last=False)
                walk.links[paths.place_key(place)] = (target.value, name == "mount")
        if name in ("tee", "cp", "mv", "install", "ln"):
            for arg in args if name == "tee" else args[-1:]:
                if not (arg.value or "-").startswith("-"):
                    note_written(walk, cwd, arg)
        elif name in _OUTPUT_OPTIONS:
            for index, arg in enumerate(args):
                if arg.value in _OUTPUT_OPTIONS[name] and index + 1 < len(args):
                    note_written(walk, cwd, args[index + 1])
                elif arg.value in ("-O", "--remote-name") or (name == "wget" and arg.value and "://" in arg.value):
                    url = next((a.value for a in args if a.value and "://" in a.value), None)
                    if url:
                        note_written(walk, cwd, Arg(url.split("?")[0].rstrip("/").rsplit("/", 1)[-1], url))
        elif name in ("dd", "dcfldd", "dc3dd"):
            for arg in args:
                if arg.value and arg.value.startswith("of="):
                    note_written(walk, cwd, Arg(arg.value[3:], arg.raw))

    def _cd(self, name: str, args: list[Arg], state: State, cdpath: bool) -> paths.Cwd:
        opts = parse(args, flags="LPen@")
        if name == "popd" or (name == "pushd" and opts.has("-n")):
            return paths.UNKNOWN if name == "popd" else state.cwd
        if not opts.operands:
            return paths.UNKNOWN if name == "pushd" or state.env.home_tainted else paths.Cwd("known", "~")
        target = opts.operands[0]
        if target.value is None or target.value == "-" or target.value.startswith(("+", "-")):
            return paths.UNKNOWN
        if (cdpath or "CDPATH" in state.env.bindings) and not target.value.startswith(("/", "./", "../", "~")):
            return paths.UNKNOWN  # CDPATH may send a relative cd anywhere
        return self.new_cwd(target, state.cwd)

    def new_cwd(self, target: Arg, cwd: paths.Cwd) -> paths.Cwd:
        if target.value is None or target.glob:
            return paths.UNKNOWN
        place = paths.resolve(target.value, cwd, self.walk.links)
        if place.escape or place.kind == "unknown" or (place.kind == "home" and ".." in place.path.split("/")):
            return paths.UNKNOWN
        if place.kind == "start":
            return paths.Cwd("start", "" if place.path == "." else place.path)
        return paths.Cwd("known", place.path)

    # -- variables ----------------------------------------------------------------------------------

    @staticmethod
    def _assigned_name(word: Word) -> str:
        first = word.parts[0]
        assert isinstance(first, Lit)
        match = ASSIGNMENT.match(first.text)
        return match.group(1) if match else ""

    def _value(self, word: Word, state: State) -> tuple[str, Arg, bool]:
        first = word.parts[0]
        assert isinstance(first, Lit)
        match = ASSIGNMENT.match(first.text)
        assert match is not None
        rest = Word([Lit(first.text[match.end():], False), *word.parts[1:]], word.source, word.start, word.end)
        values = expand(rest, state.env)
        value = values[0] if len(values) == 1 else Arg(None, word.raw, why="several words")
        return match.group(1), value, bool(match.group(2) or match.group(3))

    def _variable_code(self, word: Word, state: State) -> None:
        name, value, _ = self._value(word, state)
        carried = variable_code(name, value)
        if carried is not None:
            if value.value is None:
                self.walk.note(confirm("code-from-elsewhere", f"{carried[1]} holds shell code only known at run "
                                                              f"time: {value.why}"), word.raw)
            else:
                self.walk.nested(value.value, state, carried[1])

    def assign(self, word: Word, state: State) -> None:
        name, value, partial_update = self._value(word, state)
        self._variable_code(word, state)
        if partial_update:  # an array element or +=
            state.env.bindings.pop(name, None)
            state.env.home_tainted |= name == "HOME"
            return
        self._bind(name, value, state)

    @staticmethod
    def _bind(name: str, value: Arg, state: State) -> None:
        if value.value is None:
            state.env.bindings.pop(name, None)
            state.env.home_tainted |= name == "HOME"
        else:
            state.env.bindings[name] = (value,)

