"""A person in the loop over MCP: elicitation for commands the policy is unsure of.

Each command tool has a parameter filled by a resolver (the SDK's ``Resolve``) before the
tool body runs: when the policy says *confirm*, the resolver returns an ``Elicit``, which the
SDK turns into an elicitation request the client shows to its person (mid-call under
2025-11-25, as an ``input_required`` round under 2026-07-28). A client that did not declare
the elicitation capability (or a call from the HTTP API, where nobody can be asked) is not
asked: the body then applies the policy file's ``on_unsure`` fallback, and says so.

Resolvers may run once per round, so they only read (the policy, which is pure); the tool
body runs once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    Context,
    DeclinedElicitation,
    Elicit,
    ElicitationResult,
)
from pydantic import BaseModel, Field

from mcp_bridge.core import Cluster
from mcp_bridge.errors import JexidaError
from mcp_bridge.gate import NOBODY, Approval
from mcp_bridge.server.calls import in_request


class Confirm(BaseModel):
    """What the person is asked: one yes/no."""

    confirm: bool = Field(description="Run it?")


@dataclass
class NotAsked:
    why: Literal["not needed", "the MCP client has no elicitation capability", "no person to ask (HTTP API)"]


def _can_elicit(ctx: Context) -> bool:
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.elicitation is None:
        return False
    # 2025-11-25 over HTTP with plain JSON responses has no channel for a server's request.
    return ctx.protocol_version == "2026-07-28" or ctx.session.can_send_request


def ask(cluster: Cluster, commands: Sequence[str], where: str, ctx: Context | None) -> Elicit[Confirm] | NotAsked:
    """Elicit a yes for the commands the policy is unsure of, or say why nobody is asked."""
    try:
        unsure = cluster.unsure(commands)
    except JexidaError:
        return NotAsked("not needed")  # the tool body reports the same error, word for word
    if not unsure:
        return NotAsked("not needed")
    if not in_request(ctx):
        return NotAsked("no person to ask (HTTP API)")
    assert ctx is not None
    if not _can_elicit(ctx):
        return NotAsked("the MCP client has no elicitation capability")
    lines = [f"The command policy wants your yes before running this on {where}:"]
    for command, decision in unsure:
        lines.append(f"  command: {command}")
        lines.append(f"  why: {decision.reason}")
    return Elicit("\n".join(lines), Confirm)


def approval_from(result: ElicitationResult[Confirm]) -> Approval:
    """The person's answer as the core's Approval."""
    if isinstance(result, AcceptedElicitation):
        data = result.data
        if isinstance(data, NotAsked):
            return NOBODY if data.why == "not needed" else Approval.nobody(data.why)
        if isinstance(data, Confirm):
            return Approval("accepted" if data.confirm else "declined", "MCP elicitation")
    if isinstance(result, DeclinedElicitation):
        return Approval("declined", "MCP elicitation")
    if isinstance(result, CancelledElicitation):
        return Approval("canceled", "MCP elicitation")
    return Approval.nobody("the question got no answer")
