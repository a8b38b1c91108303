"""The gate between the policy's decision and a run: deny, ask a person, or go.

The policy answers allow, deny or confirm. For confirm, each face asks a person in its own
way (MCP elicitation, a terminal prompt, ``--yes``) and hands the answer to the core as an
:class:`Approval`; when nobody could be asked, the policy file's ``on_unsure`` fallback
decides. Everything here is decided in one place for every face, and every verdict says,
in words, what happened and how to change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mcp_bridge import models
from mcp_bridge.policy import PolicyDecision

Answer = Literal["accepted", "declined", "canceled"]


@dataclass(frozen=True)
class Approval:
    """A person's answer to "run this?", or None when nobody could be asked (and why)."""

    answer: Answer | None
    how: str  # "elicitation", "terminal prompt", "--yes", "the client has no elicitation", "no terminal", ...

    @classmethod
    def nobody(cls, why: str) -> Approval:
        return cls(None, why)


NOBODY = Approval.nobody("nobody was asked")


@dataclass(frozen=True)
class Verdict:
    command: str
    decision: PolicyDecision
    run: bool
    answer: str | None  # accepted, declined, canceled, fallback-allow, fallback-deny; None when not asked
    status: models.CommandStatus | None  # for a command that does not run: rejected or declined
    message: str  # what happened and what to do; also said when a fallback let a command run

    @property
    def audit_decision(self) -> str:
        kind = self.decision.decision
        return kind if not self.decision.rule else f"{kind}:{self.decision.rule}"

    def refused(self, node: str | None = None) -> models.CommandResult:
        """The result of a command that did not run."""
        assert self.status is not None
        return models.CommandResult(node=node, command=self.command, ok=False, status=self.status,
                                    rule=self.decision.rule, message=self.message)


def decide(decision: PolicyDecision, command: str, approval: Approval, on_unsure: str, policy_file: str) -> Verdict:
    """The verdict for one command, given the policy's decision and what the face learned from a person.

    The policy's reason already names its rule, "(rule power-state)": the messages do not again."""
    if decision.decision == "allow":
        return Verdict(command, decision, True, None, None, "")
    if decision.decision == "deny":
        return Verdict(command, decision, False, None, "rejected",
                       f"refused by the policy: {decision.reason}")
    where = policy_file or "a policy file (~/.config/jexida/policy.yml)"
    if approval.answer == "accepted":
        return Verdict(command, decision, True, "accepted", None,
                       f"a person said yes ({approval.how}): {decision.reason}")
    if approval.answer in ("declined", "canceled"):
        verb = "declined" if approval.answer == "declined" else "canceled the question"
        return Verdict(command, decision, False, approval.answer, "declined",
                       f"not run: the person {verb} ({approval.how}). The policy: {decision.reason}")
    if on_unsure == "allow":
        return Verdict(command, decision, True, "fallback-allow", None,
                       f"ran without a person's yes ({approval.how}) because on_unsure is allow in {where}. "
                       f"The policy: {decision.reason}")
    return Verdict(command, decision, False, "fallback-deny", "rejected",
                   f"needs a person's yes ({decision.reason}), and nobody could be asked "
                   f"({approval.how}), so the fallback on_unsure: deny applied. To run it: use an MCP client that "
                   f"supports elicitation, or `jexida run --yes` at a terminal, or set on_unsure: allow in {where}")
