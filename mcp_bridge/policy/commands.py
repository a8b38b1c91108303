"""One simple command: expand it, peel wrappers off, apply the rules, judge, then follow it.

Following a command means: walking the code it hands on (a ``-c`` string, ``find -exec``, text
piped into a shell), and applying its effects on what later commands see (``cd``, ``ln -s``,
``mount --bind``, variable assignments, ``source``). Effects are applied after the command is
judged, in the order the shell would apply them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from mcp_bridge.policy import paths, sources, wrappers
from mcp_bridge.policy.base import Finding, confirm
from mcp_bridge.policy.options import parse
from mcp_bridge.policy.rules import bind_mounts, check_program, program_name, symlinks_made
from mcp_bridge.policy.rules_disk import check_written
from mcp_bridge.policy.syntax import Command, Lit, Redir, Simple, Word
from mcp_bridge.policy.words import Arg, Env, expand, param_names

if TYPE_CHECKING:
    from mcp_bridge.policy.analysis import Input, State, Walk

_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])?(\+?)=")
_WRITES = frozenset({">", ">>", ">|", "&>", "&>>", "<>", ">&"})
_CLEARS_VARIABLES = frozenset({"read", "mapfile", "readarray", "getopts", "set", "shift", "unset", "let",
                               "declare", "typeset", "local", "export", "readonly", "printf"})
_DECLARES = frozenset({"declare", "typeset", "local", "export", "readonly"})
_PRINTF_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|0[0-7]{0,3}|.)", re.DOTALL)
_PRINTF_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "\\": "\\",
                  '"': '"', "'": "'"}
_PRINTF_DIRECTIVE = re.compile(r"%[-+ #0-9.]*([a-zA-Z%])")


class RuleContext:
    """What a rule sees of the walk: the working directory and a way to queue nested code."""

    def __init__(self, walk: Walk, cwd: paths.Cwd, after: list[Callable[[], None]], state: State) -> None:
        self.walk = walk
        self.cwd = cwd
        self.after = after
        self.state = state

    def place(self, text: str, follow_last: bool = True) -> paths.Place:
        return paths.resolve(text, self.cwd, self.walk.links, follow_last)

    def nested_argv(self, argv: list[Arg], skip_rules: bool = False) -> None:
        self.after.append(partial(self.walk.runner.run_argv, [argv], self.state.copy(), None, [],
                                  " ".join(a.show() for a in argv)[:200], "", skip_rules=skip_rules,
                                  top=False, cwd=self.cwd))

    def nested_script(self, code: Arg, how: str) -> None:
        if code.value is not None:
            self.after.append(partial(self.walk.nested, code.value, self.state, how, cwd=self.cwd))


def is_assignment(word: Word) -> bool:
    first = word.parts[0] if word.parts else None
    return isinstance(first, Lit) and not first.quoted and _ASSIGNMENT.match(first.text) is not None


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
        stdin = self.redirections(node.redirs, state, findings, stdin)
        redirect_text = " ".join(f"{r.fd or ''}{r.op} {r.target.raw if r.target else ''}" for r in node.redirs)
        text = " ".join([*(w.raw for w in node.words), redirect_text]).strip()[:200]
        if not words:
            walk.judge([], findings, text, redirect_text, needs_rule=any(r.op in _WRITES for r in node.redirs))
            for word in assignments:
                self.assign(word, state)
            return
        inner_state = state
        if any(_ASSIGNMENT.match(w.parts[0].text).group(1) == "HOME" for w in assignments  # type: ignore[union-attr]
               ):
            inner_state = state.copy()
            inner_state.env.home_tainted = True
        multi = next((n for w in words for n in param_names(w)
                      if len(state.env.bindings.get(n, ())) > 1), None)
        if multi is None:
            argvs = [[a for w in words for a in expand(w, state.env)]]
        else:
            argvs = [[a for w in words for a in expand(w, state.env, (multi, i))]
                     for i in range(len(state.env.bindings[multi]))]
            argvs.append([a for w in words for a in expand(w, state.env)])  # last: for nested code
        self.run_argv(argvs, inner_state, stdin, findings, text, redirect_text, real_state=state)

    def run_argv(self, argvs: list[list[Arg]], state: State, stdin: Input | None, findings: list[Finding],
                 text: str, redirect_text: str, skip_rules: bool = False, top: bool = True,
                 cwd: paths.Cwd | None = None, real_state: State | None = None) -> None:
        """Examine the command (each variant when a loop variable has several values), judge it,
        then walk what it runs and apply its effects."""
        findings = list(findings)
        if len(argvs) > 1:
            for argv in argvs[:-1]:
                _, variant_findings, _ = self.examine(argv, state, stdin, skip_rules, top, cwd)
                findings += variant_findings
            levels, _, after = self.examine(argvs[-1], state, stdin, True, top, cwd)
        else:
            levels, more, after = self.examine(argvs[0], state, stdin, skip_rules, top, cwd)
            findings += more
        self.walk.judge(levels, findings, text, redirect_text, needs_rule=True)
        if top:
            self.effects(levels, real_state or state, cwd)
        for action in after:
            action()

    def examine(self, argv: list[Arg], state: State, stdin: Input | None, skip_rules: bool, top: bool,
                cwd: paths.Cwd | None) -> tuple[list[list[Arg]], list[Finding], list[Callable[[], None]]]:
        walk = self.walk
        levels: list[list[Arg]] = []
        findings: list[Finding] = []
        after: list[Callable[[], None]] = []
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
            name = program_name(program.value)
            args = current[1:]
            if function_call_possible and (program.value in walk.functions
                                           or any(frame.name == program.value for frame in walk.frames)):
                after.append(partial(walk.call_function, program.value, state))
                break
            function_call_possible = False
            unwrapped = wrappers.unwrap(name, args)
            if name == "parallel":
                self._parallel(args, state, findings, after, cwd)
                break
            if unwrapped is not None:
                if unwrapped.uncertain is not None:
                    findings.append(confirm("dynamic-program", f"'{name}' has an argument only known at run time "
                                                               "where its options are, so what it runs is uncertain"))
                if unwrapped.no_run:
                    break
                if unwrapped.cwd is not None:
                    cwd = self.new_cwd(unwrapped.cwd, cwd, state.env)
                if unwrapped.assigns and "HOME" in unwrapped.assigns:
                    state = state.copy()
                    state.env.home_tainted = True
                if unwrapped.script is not None:
                    if unwrapped.script.value is None:
                        findings.append(confirm("code-from-elsewhere", f"'{name}' runs shell code only known at "
                                                                       f"run time: {unwrapped.script.why}"))
                    else:
                        after.append(partial(walk.nested, unwrapped.script.value, state, name, cwd=cwd))
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
            code = sources.code_of(name, args)
            if code is not None:
                findings.extend(code.findings)
                for script, how in code.scripts:
                    assert script.value is not None
                    after.append(partial(walk.nested, script.value, state, how, same_shell=code.same_shell,
                                         fresh=code.fresh, positional=code.positional, cwd=cwd))
                if code.argv:
                    context.nested_argv(code.argv)
                self._stdin_code(code, stdin, state, findings, after, cwd)
            break
        return levels, findings, after

    def _stdin_code(self, code: sources.CodeRun, stdin: Input | None, state: State, findings: list[Finding],
                    after: list[Callable[[], None]], cwd: paths.Cwd) -> None:
        """A program that reads code on standard input: judge what the command line feeds it."""
        if not code.stdin or (stdin is not None and stdin.kind == "file"):
            return
        if stdin is None:
            findings.append(confirm("code-from-elsewhere", f"{code.stdin} runs code read from its standard "
                                                           "input, which the command line does not show"))
        elif stdin.kind == "unknown":
            findings.append(confirm("code-from-elsewhere", f"{code.stdin} runs code read from {stdin.how}"))
        elif code.stdin_is_shell:
            after.append(partial(self.walk.nested, stdin.text, state, f"{code.stdin} (read from standard input)",
                                 fresh=code.fresh, cwd=cwd))
        else:
            checked = sources.CodeRun()
            sources.risky_code(stdin.text, code.stdin, checked)
            findings.extend(checked.findings)

    def _parallel(self, args: list[Arg], state: State, findings: list[Finding], after: list[Callable[[], None]],
                  cwd: paths.Cwd) -> None:
        template, inputs, from_stdin = wrappers.parallel_template(args)
        scripts = [template] if template is not None else inputs
        if template is None and from_stdin:
            findings.append(confirm("code-from-elsewhere", "parallel runs commands read from its standard input"))
        for script in scripts:
            if script.value is None:
                findings.append(confirm("code-from-elsewhere", f"parallel runs code only known at run time: "
                                                               f"{script.why}"))
            else:
                after.append(partial(self.walk.nested, script.value, state, "parallel", cwd=cwd))

    # -- effects on later commands ----------------------------------------------------------------

    def effects(self, levels: list[list[Arg]], state: State, cwd: paths.Cwd | None) -> None:
        base = cwd or state.cwd
        direct = [level for level in levels if level and level[0].value is not None]
        names = [program_name(level[0].value or "") for level in direct]
        shell_level = 0
        while shell_level < len(names) - 1 and names[shell_level] in ("builtin", "command"):
            shell_level += 1
        name = names[shell_level] if names else ""
        args = direct[shell_level][1:] if direct else []
        if name in ("cd", "pushd", "popd"):
            state.cwd = self._cd(name, args, state)
        elif name in ("source", "."):
            state.cwd = paths.UNKNOWN
            state.env.bindings.clear()
        elif name in _CLEARS_VARIABLES:
            state.env.bindings.clear()
            if name in _DECLARES:
                for arg in args:
                    if arg.value is not None and _ASSIGNMENT.match(arg.value):
                        self._bind(arg.value.split("=", 1)[0], Arg(arg.value.split("=", 1)[1], arg.raw), state)
                    elif arg.value is None or (arg.value or "").startswith("HOME"):
                        state.env.home_tainted = state.env.home_tainted or "HOME" in arg.raw
        for level in direct:  # links and mounts change the filesystem, whoever runs them
            level_name = program_name(level[0].value or "")
            made = symlinks_made(level[1:]) if level_name == "ln" else (
                bind_mounts(level[1:]) if level_name == "mount" else None)
            for link, target in made or []:
                if link.value is None:
                    continue
                place = paths.resolve(link.value, base, self.walk.links, follow_last=False)
                self.walk.links[paths.place_key(place)] = (target.value, level_name == "mount")

    def _cd(self, name: str, args: list[Arg], state: State) -> paths.Cwd:
        opts = parse(args, flags="LPen@")
        if name == "popd" or (name == "pushd" and opts.has("-n")):
            return paths.UNKNOWN if name == "popd" else state.cwd
        if not opts.operands:
            return paths.UNKNOWN if name == "pushd" or state.env.home_tainted else paths.Cwd("known", "~")
        target = opts.operands[0]
        if target.value is None or target.value == "-" or target.value.startswith(("+", "-")):
            return paths.UNKNOWN
        return self.new_cwd(target, state.cwd, state.env)

    def new_cwd(self, target: Arg, cwd: paths.Cwd, env: Env) -> paths.Cwd:
        if target.value is None or target.glob:
            return paths.UNKNOWN
        place = paths.resolve(target.value, cwd, self.walk.links)
        if place.escape or place.kind == "unknown" or (place.kind == "home" and ".." in place.path.split("/")):
            return paths.UNKNOWN
        if place.kind == "start":
            return paths.Cwd("start", "" if place.path == "." else place.path)
        return paths.Cwd("known", place.path)

    def assign(self, word: Word, state: State) -> None:
        first = word.parts[0]
        assert isinstance(first, Lit)
        match = _ASSIGNMENT.match(first.text)
        assert match is not None
        name = match.group(1)
        if match.group(2) or match.group(3):  # an array element or +=
            state.env.bindings.pop(name, None)
            state.env.home_tainted |= name == "HOME"
            return
        rest = Word([Lit(first.text[match.end():], False), *word.parts[1:]], word.source, word.start, word.end)
        values = expand(rest, state.env)
        self._bind(name, values[0] if len(values) == 1 else Arg(None, word.raw, why="several words"), state)

    @staticmethod
    def _bind(name: str, value: Arg, state: State) -> None:
        if value.value is None:
            state.env.bindings.pop(name, None)
            state.env.home_tainted |= name == "HOME"
        else:
            state.env.bindings[name] = (value,)

    # -- redirections and pipes ----------------------------------------------------------------------

    def redirections(self, redirs: list[Redir], state: State, findings: list[Finding] | None,
                     stdin: Input | None) -> Input | None:
        from mcp_bridge.policy.analysis import Input

        judged = findings is None
        findings = [] if findings is None else findings
        context = RuleContext(self.walk, state.cwd, [], state)
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
                    stdin = Input("unknown", how=f"{'a process substitution' if arg.raw.startswith('<(') else 'a file'}"
                                                 f" only known at run time ({arg.raw[:60]})")
                elif arg.value not in sources.STDIN_PATHS:
                    stdin = Input("file", how=arg.value)
            elif redir.op == "<&" and target and target[0].value not in ("0",):
                stdin = None if target[0].value == "-" else Input("unknown", how="another file descriptor")
            if redir.op in _WRITES and target:
                if redir.op == ">&" and target[0].value is not None and re.fullmatch(r"\d+-?|-", target[0].value):
                    continue
                for arg in target:
                    finding = check_written(arg, context, f"'{redir.op}'")
                    if finding is not None:
                        findings.append(finding)
        if judged and findings:
            text = " ".join(f"{r.fd or ''}{r.op} {r.target.raw if r.target else ''}" for r in redirs)
            self.walk.judge([], findings, text, text)
        return stdin

    def output_of(self, command: Command, state: State, stdin: Input | None) -> Input:
        """What ``command`` writes into the pipe after it, when the command line shows it."""
        from mcp_bridge.policy.analysis import Input

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
        args = argv[1:]
        if any(a.value is None for a in args):
            return Input("unknown", how=f"the output of `{name}` with arguments only known at run time")
        values = [a.value or "" for a in args]
        if name == "echo":
            while values and re.fullmatch(r"-[neE]+", values[0]):
                values = values[1:]
            text = " ".join(values)
            if "\\" in text:
                return Input("unknown", how="echo output with backslash escapes (shells differ on them)")
            return Input("known", text + "\n")
        if name == "printf" and values:
            return Input("known", _printf(values[0], values[1:]))
        if name == "cat":
            operands = [v for v in values if not v.startswith("-") or v == "-"]
            if not operands or operands == ["-"]:
                own = self.redirections(command.redirs, state, [], stdin)
                return own if own is not None else Input("known", "")
            return Input("file", how=" ".join(operands))
        return Input("unknown", how=f"the output of `{name}`")


def _printf(template: str, args: list[str]) -> str:
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
    for _ in range(16):
        def directive(match: re.Match[str]) -> str:
            if match.group(1) == "%":
                return "%"
            value = pending.pop(0) if pending else ""
            return unescape(value) if match.group(1) == "b" else value

        out.append(_PRINTF_DIRECTIVE.sub(directive, template))
        if not pending or not _PRINTF_DIRECTIVE.search(template):
            break
    return "".join(out)
