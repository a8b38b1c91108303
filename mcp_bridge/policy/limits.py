"""Hard limits and the step counter that keep the analysis linear and fail closed.

Every piece of the analysis (the parser reading characters, the walk visiting nodes, a nested
``bash -c`` string parsed again) spends steps from one :class:`Budget`. The budget is
proportional to the command's length, so whatever the input, the work is bounded by
``STEP_BASE + STEP_FACTOR * len(command)`` steps; hitting it, the input size limit or the
nesting limit ends the analysis with *confirm* (rule ``too-complex``), never with an exception
and never with *allow*. The counter is deterministic, which is what the linearity tests use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

MAX_INPUT = 64 * 1024  # characters of command text analysed at all
MAX_DEPTH = 32  # nesting of $( ( { `...` ${ if/while/case and nested shell strings, together
STEP_BASE = 20_000
STEP_FACTOR = 64  # a nested `bash -c '...'` re-reads its string: allow a bounded number of re-reads


class AnalysisStop(Exception):
    """The analysis cannot go on; ``rule`` says why (``too-complex`` or ``unparseable``)."""

    rule = "unparseable"


class Unparseable(AnalysisStop):
    """The text is not shell the policy can read (unbalanced quotes, ``$(`` without ``)``)."""

    rule = "unparseable"


class TooComplex(AnalysisStop):
    """A size, depth or step limit was reached."""

    rule = "too-complex"


class Budget:
    """Steps spent so far and the current nesting depth, shared by parser and walk."""

    __slots__ = ("depth", "limit", "steps")

    def __init__(self, text_length: int) -> None:
        self.steps = 0
        self.depth = 0
        self.limit = STEP_BASE + STEP_FACTOR * max(text_length, 0)

    def spend(self, amount: int = 1) -> None:
        self.steps += amount
        if self.steps > self.limit:
            raise TooComplex(f"the analysis needed more than {self.limit} steps")

    @contextmanager
    def nested(self, what: str) -> Iterator[None]:
        """One level deeper; beyond MAX_DEPTH the analysis stops (confirm, too-complex)."""
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise TooComplex(f"{what} nested more than {MAX_DEPTH} levels deep")
            yield
        finally:
            self.depth -= 1
