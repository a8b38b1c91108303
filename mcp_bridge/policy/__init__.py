"""Which commands the bridge runs: a command policy that parses the shell and fails closed.

Three outcomes:

* **deny**: known destructive after analysis (a built-in rule from :data:`BUILTIN_RULES`, or a
  user deny rule).
* **allow**: fully analysed; every program name and every argument a rule looks at is a static
  word, and nothing matched.
* **confirm**: something entered a rule's territory but cannot be decided before it runs (a
  program name or target only known at run time, code handed to a shell from elsewhere, a path
  whose real place is unclear, a command over the analysis limits or one that cannot be parsed).
  A person decides; where nobody can be asked, the caller applies ``on_unsure``.

The pipeline: :mod:`.parser` (one pass, text to tree, linear, hard limits from :mod:`.limits`),
:mod:`.words` (static values), :mod:`.analysis`/:mod:`.commands` (the walk), :mod:`.wrappers`
(sudo, env, xargs...), :mod:`.sources` (nested and foreign code), :mod:`.paths` (where paths
point), the rule families in ``rules_*`` and the policy file in :mod:`.config`.

Decisions worth knowing: ``unparseable`` is *confirm* (bash would refuse the line too, but a
person can see what was meant; the complete commands before the error are still checked, so
``rm -rf /; echo 'oops`` is denied). Any internal error also ends in *confirm*, never *allow*.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mcp_bridge.policy.analysis import Denied, State, Walk
from mcp_bridge.policy.base import ADVICE, BUILTIN_RULES, Finding
from mcp_bridge.policy.config import Fallback, Mode, PolicyError, PolicyRule, UserRules, from_mapping, load_file
from mcp_bridge.policy.limits import MAX_INPUT, AnalysisStop, Budget, TooComplex
from mcp_bridge.policy.parser import Parser
from mcp_bridge.policy.syntax import Script

__all__ = ["BUILTIN_RULES", "CommandPolicy", "Decision", "PolicyDecision", "PolicyError", "PolicyRule",
           "analysis_steps"]

Decision = Literal["allow", "deny", "confirm"]
_TEXT_LIMIT = 200
_RECENT_DECISIONS = 256  # decisions kept per policy (see CommandPolicy.check)


@dataclass(frozen=True)
class PolicyDecision:
    decision: Decision
    rule: str | None  # the rule for deny/confirm (and for allow via a user allow rule); None for a plain allow
    reason: str  # one sentence: what was found and, for deny/confirm, what to do

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    def to_dict(self, command: str) -> dict[str, Any]:
        return {"command": command, "decision": self.decision, "rule": self.rule, "reason": self.reason}


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT - 3] + "..."


class CommandPolicy:
    """Built-in rules plus the mode, fallback and deny/allow rules of an optional policy file."""

    def __init__(self, deny: Sequence[PolicyRule] = (), allow: Sequence[PolicyRule] = (), mode: Mode = "default",
                 on_unsure: Fallback = "deny", source: str = "the policy file") -> None:
        self.rules = UserRules(list(deny), list(allow), mode, on_unsure, source)
        self._recent: OrderedDict[str, PolicyDecision] = OrderedDict()
        self._recent_lock = threading.Lock()

    @property
    def mode(self) -> Mode:
        return self.rules.mode

    @property
    def on_unsure(self) -> Fallback:
        return self.rules.on_unsure

    @property
    def source(self) -> str:
        return self.rules.source

    @classmethod
    def from_file(cls, path: str | Path | None) -> CommandPolicy:
        """``None``: the built-in rules in default mode. A file that is missing, unreadable or
        malformed raises :class:`PolicyError` naming the file and the field."""
        if path is None:
            return cls()
        return cls._of(load_file(path))

    @classmethod
    def from_mapping(cls, data: Any, source: str = "<policy>") -> CommandPolicy:
        return cls._of(from_mapping(data, source))

    @classmethod
    def _of(cls, rules: UserRules) -> CommandPolicy:
        policy = cls()
        policy.rules = rules
        return policy

    def check(self, command: str) -> PolicyDecision:
        """The decision on one command line; never raises.

        The latest decisions are kept: a face asks before calling (``Cluster.unsure``) and the core
        decides again when it runs the command, and a long command's analysis is not free. A policy
        never changes its rules in place (a changed file gives a new CommandPolicy)."""
        if not isinstance(command, str):
            return self._check(command)[0]
        recent = self._recent
        with self._recent_lock:
            if command in recent:
                recent.move_to_end(command)
                return recent[command]
        decision = self._check(command)[0]
        with self._recent_lock:
            recent[command] = decision
            if len(recent) > _RECENT_DECISIONS:
                recent.popitem(last=False)
        return decision

    def check_many(self, commands: Sequence[str]) -> list[PolicyDecision]:
        return [self.check(command) for command in commands]

    # -- internals -----------------------------------------------------------------------

    def _check(self, command: str) -> tuple[PolicyDecision, int]:
        if not isinstance(command, str):
            return self._unsure(Finding("confirm", "unparseable", "the command is not text"), ""), 0
        if len(command) > MAX_INPUT:
            finding = Finding("confirm", "too-complex", f"the command is {len(command)} characters long, over the "
                                                        f"{MAX_INPUT} the policy analyses")
            return self._unsure(finding, command[:80]), 0
        budget = Budget(len(command))
        walk = Walk(self.rules, budget)
        try:
            decision = self._analyse(command, budget, walk)
        except Denied as denied:
            decision = self._denied(denied)
        except RecursionError:
            decision = self._unsure(Finding("confirm", "too-complex", "the command is nested too deeply"), command)
        except Exception as exc:  # fail closed: a bug in the analysis must never allow
            finding = Finding("confirm", "unparseable", f"the policy could not analyse the command "
                                                        f"({type(exc).__name__}: {exc})")
            decision = self._unsure(finding, command)
        return decision, budget.steps

    def _analyse(self, command: str, budget: Budget, walk: Walk) -> PolicyDecision:
        items: list = []
        problem: AnalysisStop | None = None
        try:
            Parser(command, budget).parse_program(items)
        except AnalysisStop as exc:
            problem = exc
        except RecursionError:
            problem = TooComplex("the command is nested too deeply")
        try:
            walk.script(Script(items), State())
        except AnalysisStop as exc:
            problem = problem or exc
        if problem is not None:
            what = (f"the command cannot be parsed ({problem})" if problem.rule == "unparseable"
                    else f"the command is too complex to analyse ({problem})")
            return self._unsure(Finding("confirm", problem.rule, what), command)
        if walk.confirmed is not None:
            finding, text = walk.confirmed
            return self._unsure(finding, text)
        if walk.lifted:
            rule, finding, text = walk.lifted[0]
            return PolicyDecision("allow", rule.id, f"allowed by rule '{rule.id}' from {self.source} "
                                  f"({rule.reason}), which lifts built-in rule '{finding.rule}' for "
                                  f"`{_quote(text)}`")
        if self.mode == "strict" and walk.allowed_by:
            rule, text = walk.allowed_by[0]
            return PolicyDecision("allow", rule.id, f"allowed in strict mode by rule '{rule.id}' from "
                                  f"{self.source} ({rule.reason}) for `{_quote(text)}`")
        return PolicyDecision("allow", None, "every program and target is known and no rule matched")

    def _denied(self, denied: Denied) -> PolicyDecision:
        finding, text = denied.finding, _quote(denied.text)
        if denied.user_rule is not None:
            return PolicyDecision("deny", finding.rule, f"{finding.what} (rule {finding.rule} from {self.source}, "
                                  f"in `{text}`); change the command, or edit rule '{finding.rule}' "
                                  f"in {self.source}")
        if finding.rule == "strict-mode":
            return PolicyDecision("deny", "strict-mode", f"{finding.what}: `{text}` (rule strict-mode); add an "
                                  f"allow rule to {self.source} if it should run")
        return PolicyDecision("deny", finding.rule, f"{finding.what} in `{text}` (rule {finding.rule}); "
                              f"{ADVICE.get(finding.rule, 'change the command')}, or add an allow rule matching "
                              f"exactly this command to {self.source}")

    def _unsure(self, finding: Finding, text: str) -> PolicyDecision:
        """A confirm, as the mode turns it: strict denies it, permissive allows it."""
        text = _quote(text)
        where = f" in `{text}`" if text else ""
        if self.mode == "strict":
            return PolicyDecision("deny", "strict-mode", f"strict mode denies what it cannot decide: {finding.what}"
                                  f"{where} (rule {finding.rule}); add an allow rule to {self.source} if it "
                                  "should run")
        if self.mode == "permissive":
            return PolicyDecision("allow", finding.rule, f"unsure, but permitted by permissive mode: "
                                  f"{finding.what}{where} (rule {finding.rule})")
        return PolicyDecision("confirm", finding.rule, f"{finding.what}{where} (rule {finding.rule}); "
                              f"{ADVICE.get(finding.rule, 'a person must confirm it')}")


def analysis_steps(command: str, policy: CommandPolicy | None = None) -> int:
    """The deterministic work counter of one check: characters read, nodes visited, strings re-read."""
    return (policy or CommandPolicy())._check(command)[1]
