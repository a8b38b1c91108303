"""The policy's work is linear in the command's length, and no input makes it raise.

Work is measured with the policy's deterministic step counter (``analysis_steps``), not with
wall time: doubling a nested input must at most (about) double the steps. The old policy took
10 to 40 s on ``echo $((1+$((1+...`` nested 13 deep; exponential work shows up here as a ratio
far above 2. Nothing here runs a command.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_bridge.policy import BUILTIN_RULES, CommandPolicy, analysis_steps
from mcp_bridge.policy.limits import MAX_DEPTH, MAX_INPUT, STEP_BASE, STEP_FACTOR

Shape = Callable[[int, int], str]  # (nesting depth k, padding m per level) -> command


def _heredocs(k: int, m: int) -> str:
    inner = "echo " + "a " * m
    for level in range(k):
        inner = f"cat <<E{level}\n{'b ' * m}$({inner}\n)\nE{level}\n"
    return inner


SHAPES: dict[str, tuple[Shape, int]] = {  # name -> (shape, nesting levels each k costs)
    "arithmetic $((": (lambda k, m: "echo " + ("$((" + "1+" * m) * k + "1" + "))" * k, 1),
    "substitution $(": (lambda k, m: "echo " + ("$(echo " + "a " * m) * k + "x" + ")" * k, 1),
    "double quotes": (lambda k, m: "echo " + ('"$(echo ' + "a " * m) * k + "x" + ')"' * k, 1),
    "brace groups": (lambda k, m: "{ " * k + "echo " + "a " * m + "; " + "}; " * (k - 1) + "}", 1),
    "subshells": (lambda k, m: "( " * k + "echo " + "a " * m + ")" * k, 1),
    "${...}": (lambda k, m: "echo " + ("${x:-" + "a" * m) * k + "}" * k, 1),
    "here-documents": (_heredocs, 2),
    "if blocks": (lambda k, m: "if true; then " * k + "echo " + "a " * m + "; fi" * k, 1),
}


def ratio(command_for: Callable[[int], str], small: int) -> float:
    return analysis_steps(command_for(2 * small)) / analysis_steps(command_for(small))


@pytest.mark.parametrize("name", SHAPES)
def test_steps_grow_linearly_with_nesting_depth(name: str) -> None:
    shape, cost = SHAPES[name]
    deepest = MAX_DEPTH // cost
    for depth in (2, 4, 8, deepest // 2):
        assert ratio(lambda k: shape(k, 8), depth) <= 2.2, (name, depth)
    decision = CommandPolicy().check(shape(deepest, 8))
    assert decision.rule != "too-complex", decision.reason  # the deepest allowed nesting is analysed


@pytest.mark.parametrize("name", SHAPES)
def test_steps_grow_linearly_with_length(name: str) -> None:
    shape, cost = SHAPES[name]
    depth = 8 // cost
    for padding in (64, 256, 1024):  # up to several thousand characters
        assert ratio(lambda m: shape(depth, m), padding) <= 2.2, (name, padding)
    assert len(shape(depth, 2048)) > 4000  # several thousand characters at the largest


@pytest.mark.parametrize("name", SHAPES)
def test_nesting_beyond_the_limit_is_too_complex_and_cheap(name: str) -> None:
    shape, _ = SHAPES[name]
    for depth in (64, 512, 2048):
        command = shape(depth, 1)
        if len(command) > MAX_INPUT:
            break
        decision = CommandPolicy().check(command)
        assert (decision.decision, decision.rule) == ("confirm", "too-complex"), (name, depth)
        assert ratio(lambda k: shape(k, 1), depth) <= 2.2


WIDE = {
    "sequential arithmetic": lambda n: "echo " + "$((1+1)) " * n,
    "many commands": lambda n: "echo a; " * n,
    "pipeline": lambda n: "echo a" + " | cat" * n,
    "backticks": lambda n: "echo " + "`echo a` " * n,
    "quotes": lambda n: "echo " + "'a' \"b\" $'c' " * n,
    "heredocs": lambda n: "cat <<E\nline $x\nE\n" * n,
    "and-or": lambda n: "true" + " && true || false" * n,
    "case arms": lambda n: "case $x in " + "a) echo;; " * n + "esac",
    "brace expansion": lambda n: "echo " + "{a,b}c " * n,
    "loops": lambda n: "for f in *.log; do gzip \"$f\"; done; " * n,
    "nested shells": lambda n: "bash -c 'echo a'; " * n,
    "[[ ]] (also read as dash)": lambda n: "[[ -f a && -d b ]] && echo; " * n,
    "(( )) (also read as dash)": lambda n: "(( i++ )); " * n,
}


@pytest.mark.parametrize("name", WIDE)
def test_steps_grow_linearly_with_width(name: str) -> None:
    make = WIDE[name]
    for count in (50, 400, 1600):
        assert ratio(make, count) <= 2.2, (name, count)


def test_nested_backticks_cost_linear_in_length() -> None:
    command = "echo a"
    for _ in range(9):  # each level doubles the backslashes: 9 levels are ~2 KB
        command = "echo `" + command.replace("\\", "\\\\").replace("`", "\\`") + "`"
    steps = analysis_steps(command)
    assert steps <= 4 * len(command)
    assert CommandPolicy().check(command).decision == "allow"


def test_failed_arithmetic_reread_stays_linear() -> None:
    # `$((` that closes like a subshell is read again as `$(` + `(`: memoised, never exponential
    make = lambda k: "echo " + "$(( " * k + "x" + " ) )" * k  # noqa: E731
    for depth in (2, 4, 8):
        assert ratio(make, depth) <= 2.5, depth
    make_cmd = lambda k: "(( " * k + "true" + " ) )" * k  # noqa: E731
    for depth in (2, 4, 8):
        assert ratio(make_cmd, depth) <= 2.5, depth


def test_old_exponential_case_is_cheap() -> None:
    command = "echo " + "$((1+" * 13 + "1" + "))" * 13
    assert len(command) == 97
    assert analysis_steps(command) < 300
    assert CommandPolicy().check(command).decision == "allow"


def test_work_never_exceeds_the_budget() -> None:
    rng = random.Random(11)
    pieces = ["$(", ")", "((", "))", "{", "}", "`", "'", '"', "\\", "${", "<<E\n", "\nE\n", "eval ", "bash -c ",
              " ", ";", "|", "&&", "a", "$((", "<(", "case x in a) ", ";; esac", "for i in 1; do ", "; done"]
    for _ in range(50):
        command = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 3000)))
        steps = analysis_steps(command)
        assert steps <= STEP_BASE + STEP_FACTOR * len(command) + 64


# --------------------------------------------------------------------------------------
# Fuzzing: any text, and text built from shell fragments
# --------------------------------------------------------------------------------------

FRAGMENTS = [
    "rm", "-rf", "/", "~", "..", "*", "reboot", "sudo", "bash", "-c", "sh", "eval", "echo", "cd", "ln", "-s",
    "find", "-delete", "dd", "of=/dev/sda", "mkfs", "kill", "1", "xargs", "ssh", "host", "env", "x=", "$x",
    "$HOME", "${", "}", "$(", ")", "$((", "))", "(", "{", "`", "'", '"', "$'", "\\", "\\\n", "<<", "<<-", "<<<",
    "EOF", "\n", ";", ";;", "&", "&&", "|", "||", "|&", ">", ">>", "<", "<(", ">(", "2>&1", "if", "then", "fi",
    "while", "do", "done", "for", "in", "case", "esac", "function", "f()", "[[", "]]", "!", "#", " ", " ", "\t",
    "{a,b}", "/???/r?", "$IFS", "%", "=", "-", "--", "a", "0", "\x00", "é", "\u202e",
]
_ALLOWED = {"allow", "deny", "confirm"}


def _check_invariants(command: str) -> None:
    for policy in (CommandPolicy(), CommandPolicy(mode="strict"), CommandPolicy(mode="permissive")):
        decision = policy.check(command)
        assert decision.decision in _ALLOWED
        assert decision.rule is None or decision.rule in BUILTIN_RULES
        assert isinstance(decision.reason, str) and decision.reason
        if decision.decision != "allow":
            assert decision.rule is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=MAX_INPUT))
def test_fuzz_any_text(command: str) -> None:
    _check_invariants(command)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=300).map("".join))
def test_fuzz_shell_fragments(command: str) -> None:
    _check_invariants(command)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=1000, max_value=MAX_INPUT))
def test_fuzz_large_inputs_up_to_64_kib(seed: int, size: int) -> None:
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        piece = rng.choice(FRAGMENTS) if rng.random() < 0.8 else chr(rng.randint(1, 0x2FFF))
        parts.append(piece)
        length += len(piece)
    command = "".join(parts)[:size]
    decision = CommandPolicy().check(command)
    assert decision.decision in _ALLOWED
    assert analysis_steps(command) <= STEP_BASE + STEP_FACTOR * len(command) + 64


class _CountingLinks(dict):  # type: ignore[type-arg]
    """Links that count how often all of them are walked."""

    walks = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        _CountingLinks.walks += 1
        return super().__iter__()

    def items(self):  # type: ignore[no-untyped-def]
        _CountingLinks.walks += 1
        return super().items()


def test_resolving_a_path_looks_up_its_own_folders_not_every_link() -> None:
    """A command making N links and naming N paths must stay linear: no walk over all links per path."""
    from mcp_bridge.policy.paths import START, place_key, resolve

    links = _CountingLinks({place_key(resolve(f"l{i}", START)): ("/t", False) for i in range(500)})
    _CountingLinks.walks = 0
    for i in range(500):
        resolve(f"q{i}/x", START, links)
    assert _CountingLinks.walks == 0
    through = resolve("l7/x", START, links)
    assert through.path == "/t/x" and "link made in this command" in (through.note or "")
