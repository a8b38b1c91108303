"""An append-only audit log: one JSON object per line, each chained to the one before.

Every entry carries ``prev`` (the hash of the previous entry, ``"0" * 64`` for the first)
and ``hash``, the SHA-256 of the entry's canonical JSON without ``hash`` (sorted keys,
compact separators, UTF-8). Editing a line breaks its own hash; deleting or reordering
lines breaks the next line's ``prev``.

A chain alone cannot show that its *last* lines were cut off: the shorter file is still a
valid chain. So a side file ``<log>.head`` holds the number of lines and the last hash,
rewritten (atomically) after every append under the same lock. :func:`verify` compares
the log with it, and :meth:`AuditLog.append` refuses to extend a log whose end no longer
matches its head, so a truncation cannot be papered over by the next entry.

Appends are safe across threads and processes: each one takes ``flock(LOCK_EX)`` on the
log, reads the last line's hash, writes its line with one ``O_APPEND`` write, then updates
the head. A crash between the line and the head leaves the head exactly one entry behind;
that state is recognised and healed by the next append, and accepted by :func:`verify`.

The chain makes tampering evident, not impossible: whoever can write both files can
rewrite the whole history. Ship the log (or the head hash) elsewhere for that.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mcp_bridge.errors import JexidaError

__all__ = ["GENESIS_HASH", "AuditError", "AuditLog", "AuditVerification", "entry_hash", "verify"]

GENESIS_HASH = "0" * 64
_RESERVED_KEYS = frozenset({"ts", "prev", "hash"})
_TAIL_BLOCK = 64 * 1024


class AuditError(JexidaError):
    """The log cannot be appended to safely (its end does not match its head, or it is corrupt)."""


@dataclass
class AuditVerification:
    ok: bool
    lines: int  # entries read before the first problem (all of them when ok)
    bad_line: int | None  # 1-based; for lines cut off the end, the first missing line
    problem: str  # empty when ok


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash an entry must carry: SHA-256 over its canonical JSON without ``hash``."""
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


@dataclass
class _Head:
    lines: int
    hash: str


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def _read_head(head_path: Path) -> _Head:
    """The recorded end of the log; a missing head means an empty log (or a crash before the
    first head was written, which the one-behind rule covers)."""
    try:
        data = json.loads(head_path.read_text())
    except FileNotFoundError:
        return _Head(0, GENESIS_HASH)
    except (OSError, ValueError) as exc:
        raise AuditError(f"{head_path}: unreadable head file: {exc}") from exc
    if not (isinstance(data, dict) and isinstance(data.get("lines"), int) and isinstance(data.get("hash"), str)):
        raise AuditError(f"{head_path}: the head file must hold {{\"lines\": int, \"hash\": str}}")
    return _Head(data["lines"], data["hash"])


def _write_head(head_path: Path, head: _Head, durable: bool) -> None:
    temporary = head_path.with_name(f"{head_path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as handle:
        handle.write(json.dumps({"lines": head.lines, "hash": head.hash}) + "\n")
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, head_path)  # readers see the old head or the new one, never half


def _last_line(fd: int) -> bytes | None:
    """The last complete line of the open file (without its newline), or None when empty."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    end = size
    chunk = b""
    while end > 0:
        start = max(0, end - _TAIL_BLOCK)
        chunk = os.pread(fd, end - start, start) + chunk
        end = start
        body = chunk[:-1] if chunk.endswith(b"\n") else chunk
        newline = body.rfind(b"\n")
        if newline >= 0:
            return body[newline + 1:]
    return chunk[:-1] if chunk.endswith(b"\n") else chunk


class AuditLog:
    """The audit log at ``path`` (created on first append, mode 0600) and its ``.head``."""

    def __init__(self, path: str | Path, *, durable: bool = True) -> None:
        self.path = Path(path)
        self.head_path = _head_path(self.path)
        self.durable = durable  # fsync each line and head: an audit trail should survive a crash

    def append(
        self,
        *,
        face: str,
        action: str,
        command: str | None = None,
        nodes: list[str] | None = None,
        caller: str | None = None,
        decision: str | None = None,
        job_id: str | None = None,
        rc: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Write one entry and return it as written (with ``ts``, ``prev`` and ``hash``)."""
        clashing = sorted(_RESERVED_KEYS & set(extra))
        if clashing:
            raise ValueError(f"audit fields {clashing} are set by the log itself")
        fields: dict[str, Any] = {
            "face": face,
            "action": action,
            "command": command,
            "nodes": list(nodes) if nodes is not None else None,
            "caller": caller,
            "decision": decision,
            "job_id": job_id,
            "rc": rc,
            **extra,
        }
        # Round-trip through JSON first so the hash covers exactly what verify will read back
        # (tuples become lists, odd objects their str()).
        fields = json.loads(json.dumps(fields, default=str, allow_nan=False))

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            prev, lines_before = self._chain_end(fd)
            entry = {"ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **fields, "prev": prev}
            entry["hash"] = entry_hash(entry)
            line = _canonical(entry) + b"\n"
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
            if self.durable:
                os.fsync(fd)
            _write_head(self.head_path, _Head(lines_before + 1, entry["hash"]), self.durable)
        finally:
            os.close(fd)  # also releases the lock
        return entry

    def _chain_end(self, fd: int) -> tuple[str, int]:
        """(hash of the last entry, number of entries), checked against the head. Lock held."""
        head = _read_head(self.head_path)
        raw = _last_line(fd)
        if raw is None:
            if head.lines:
                raise AuditError(
                    f"{self.path} is empty but {self.head_path} records {head.lines} lines: the log was "
                    "truncated. Refusing to append; investigate, then call rebuild_head() to re-anchor."
                )
            return GENESIS_HASH, 0
        try:
            last = json.loads(raw)
            last_hash, last_prev = str(last["hash"]), str(last["prev"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(
                f"{self.path}: the last line is not a valid audit entry ({exc}); refusing to append. "
                "Run verify() to see what is wrong."
            ) from exc
        if last_hash == head.hash:
            return last_hash, head.lines
        if last_prev == head.hash:  # an append died between its line and its head: heal
            return last_hash, head.lines + 1
        raise AuditError(
            f"{self.path}: the last entry does not match {self.head_path} (lines were removed from the end, "
            "or the files were edited). Refusing to append; run verify(), investigate, then call "
            "rebuild_head() to re-anchor."
        )

    def verify(self) -> AuditVerification:
        return verify(self.path)

    def rebuild_head(self) -> AuditVerification:
        """Re-anchor the head on the log as it is now, if its chain is intact.

        For after an investigation (or a lost head file): this accepts the current end of
        the log as the truth, so it is an explicit operator action, never automatic.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            result, last_hash = _verify_chain(self.path)
            if result.ok:
                _write_head(self.head_path, _Head(result.lines, last_hash), self.durable)
            return result
        finally:
            os.close(fd)


def _verify_chain(path: Path) -> tuple[AuditVerification, str]:
    """Check every line's hash and link; return the result and the last hash."""
    prev = GENESIS_HASH
    count = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            problem = _line_problem(raw, prev)
            if problem:
                return AuditVerification(False, number - 1, number, f"{path}: line {number}: {problem}"), prev
            prev = json.loads(raw)["hash"]
            count = number
    return AuditVerification(True, count, None, ""), prev


def _line_problem(raw: bytes, prev: str) -> str:
    """What is wrong with one line given the previous line's hash; empty when nothing."""
    if not raw.endswith(b"\n"):
        return "incomplete (no newline at the end): the line was cut off"
    try:
        entry = json.loads(raw)
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(entry, dict) or not isinstance(entry.get("hash"), str) or "prev" not in entry:
        return "not an audit entry (needs 'prev' and 'hash')"
    try:
        expected = entry_hash(entry)
    except ValueError:  # NaN or Infinity: never written by append
        return "modified: it holds values (NaN, Infinity) the log never writes"
    if entry["hash"] != expected:
        return "modified: its hash does not match its content"
    if entry["prev"] != prev:
        return (
            "does not follow the line before it (its 'prev' is not that line's hash): "
            "a line before it was deleted, or lines were reordered or inserted"
        )
    return ""


def verify(path: str | Path) -> AuditVerification:
    """Check the chain of the log at ``path`` and its end against ``<path>.head``."""
    path = Path(path)
    head_path = _head_path(path)
    if not path.exists():
        if head_path.exists():
            return AuditVerification(False, 0, 1, f"{path}: missing, but {head_path} exists: the log was deleted")
        return AuditVerification(True, 0, None, "")
    with open(path, "rb") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)  # a consistent view of log and head
        result, last_hash = _verify_chain(path)
        if not result.ok:
            return result
        try:
            head = _read_head(head_path)
        except AuditError as exc:
            return AuditVerification(False, result.lines, None, str(exc))
        last_prev = _last_prev(path) if result.lines else GENESIS_HASH
    lines = result.lines
    if head.lines == lines and head.hash == last_hash:
        return result
    if head.lines == lines - 1 and head.hash == last_prev:
        return result  # an append died between its line and its head; the next append heals it
    if head.lines > lines:
        missing = head.lines - lines
        return AuditVerification(
            False, lines, lines + 1,
            f"{path}: line {lines + 1}: missing: {head_path} records {head.lines} lines but the log ends after "
            f"line {lines}, so the last {missing} line(s) were deleted",
        )
    return AuditVerification(
        False, lines, None,
        f"{path}: the log's end (line {lines}, hash {last_hash[:12]}...) does not match {head_path} "
        f"({head.lines} lines, hash {head.hash[:12]}...): the log or its head was edited",
    )


def _last_prev(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        raw = _last_line(fd)
    finally:
        os.close(fd)
    return str(json.loads(raw or b"{}").get("prev", ""))
