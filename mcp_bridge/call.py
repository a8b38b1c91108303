"""One call of a face into the core: the person's answer, progress, and cancellation.

A face (the MCP server, the HTTP API, the CLI) makes a :class:`Call`, passes it to the core,
and may later cancel it from another thread: when the caller gives up (an MCP client's
`notifications/cancelled`, Ctrl-C at a terminal), the core stops the call's commands on
their nodes the way a timeout stops them (the whole process group), and reports them
``canceled``. Progress goes the other way: the core says how many hosts are done.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from mcp_bridge.gate import NOBODY, Approval

ProgressFn = Callable[[float, float | None, str], None]


@dataclass(frozen=True)
class NodeRun:
    """A command started on a node: what the node-side wrapper calls its run (for a cancel to find it)."""

    node: str
    run_id: str


@dataclass
class Call:
    approval: Approval = NOBODY
    progress: ProgressFn | None = None
    _runs: list[NodeRun] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _canceled: threading.Event = field(default_factory=threading.Event)
    _killer: Callable[[list[NodeRun]], None] | None = None
    _canceled_at: float | None = None

    @property
    def canceled(self) -> bool:
        return self._canceled.is_set()

    def canceled_for(self, seconds: float) -> bool:
        """Canceled at least ``seconds`` ago: the controller stops waiting for the node then."""
        return self._canceled_at is not None and time.monotonic() - self._canceled_at >= seconds

    def started(self, runs: list[NodeRun], killer: Callable[[list[NodeRun]], None]) -> None:
        """The core records runs before they start; a cancel that came first stops them at once."""
        with self._lock:
            self._runs.extend(runs)
            self._killer = killer
            late = self.canceled
        if late:
            killer(runs)

    def finished(self, runs: list[NodeRun]) -> None:
        # One pass with a multiset, not `remove` per run: a broadcast or batch over N nodes
        # finishes N runs at once, and a list scan per run made that N^2 (issue 15).
        gone = Counter(runs)
        with self._lock:
            kept = []
            for run in self._runs:
                if gone[run] > 0:
                    gone[run] -= 1
                else:
                    kept.append(run)
            self._runs = kept

    def cancel(self) -> list[NodeRun]:
        """Stop everything this call still runs (blocking: it reaches the nodes); returns what it stopped."""
        with self._lock:
            if self._canceled_at is None:
                self._canceled_at = time.monotonic()
            self._canceled.set()
            running, killer = list(self._runs), self._killer
        if running and killer is not None:
            killer(running)
        return running

    def report(self, progress: float, total: float | None, message: str) -> None:
        if self.progress is not None:
            try:
                self.progress(progress, total, message)
            except Exception:  # a client that went away must not break the run
                self.progress = None
