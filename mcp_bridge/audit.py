"""An append-only audit log: one JSON object per line, each sealed with a keyed MAC and chained.

Every entry carries ``prev`` (the MAC of the previous entry, ``"0" * 64`` for the first)
and ``mac``: HMAC-SHA256 over the entry's canonical JSON without ``mac`` (sorted keys,
compact separators, UTF-8), keyed with a secret kept apart from the log in
``<state>/audit.key`` (mode 0600, made on the first append). Without the key nobody can
write a line, or rewrite the chain, that verifies: editing, inserting, reordering or
appending a forged line is caught, and so is recomputing plain hashes over edited lines.

The end of the log is sealed too: ``<log>.head`` holds the number of lines and the last MAC
with a MAC of its own, so cutting lines off the end, or deleting the log, is caught while
the key says there was one. The head is rewritten (atomically) after every append under
the log's ``flock``; a crash between a line and its head leaves the head exactly one entry
behind, which the next append heals and :func:`verify` accepts.

Commands are logged twice: an ``intent`` line (who, face, node, command, decision) is
written and fsynced *before* anything runs, an ``outcome`` line (rc, status) after, so a
crash or kill in between still leaves a record.

What it does not protect against: whoever can read the key (the controller's own user, or
root) can rewrite the whole history and seal it again; restoring an older log together with
its older head (a rollback) verifies. Ship lines elsewhere (``JEXIDA_AUDIT_SYSLOG=1`` also
sends each one to syslog/journald) to be safe from that.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mcp_bridge.errors import JexidaError

__all__ = ["GENESIS", "AuditError", "AuditLog", "AuditVerification", "entry_mac", "verify"]

GENESIS = "0" * 64
_RESERVED_KEYS = frozenset({"ts", "prev", "mac"})
_TAIL_BLOCK = 64 * 1024


class AuditError(JexidaError):
    """The log cannot be appended to safely; the message says what is wrong and what to do."""


@dataclass
class AuditVerification:
    ok: bool
    lines: int  # entries read before the first problem (all of them when ok)
    bad_line: int | None  # 1-based; for lines cut off the end, the first missing line
    problem: str  # empty when ok


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_mac(key: bytes, entry: Mapping[str, Any]) -> str:
    """The MAC an entry must carry: HMAC-SHA256 over its canonical JSON without ``mac``."""
    return hmac.new(key, _canonical({k: v for k, v in entry.items() if k != "mac"}), hashlib.sha256).hexdigest()


def _head_seal(key: bytes, lines: int, last: str) -> str:
    return hmac.new(key, f"head:{lines}:{last}".encode(), hashlib.sha256).hexdigest()


def key_path_for(path: Path) -> Path:
    return path.with_name("audit.key") if path.name == "audit.jsonl" else path.with_name(path.name + ".key")


def _read_key(key_path: Path) -> bytes | None:
    try:
        data = json.loads(key_path.read_text())
        return bytes.fromhex(data["key"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"{key_path}: unreadable audit key ({exc}); restore it from a backup") from exc


def _create_key(key_path: Path) -> bytes:
    """Make the key once (O_EXCL: two bridges starting together agree on one)."""
    key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = _read_key(key_path)
        assert key is not None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps({"key": key.hex(), "created": _now()}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Head:
    lines: int
    last: str


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def _read_head(head_path: Path, key: bytes) -> _Head | None:
    """The sealed end of the log; None when there is no head file."""
    try:
        data = json.loads(head_path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AuditError(f"{head_path}: unreadable head file ({exc})") from exc
    if not (isinstance(data, dict) and isinstance(data.get("lines"), int) and isinstance(data.get("mac"), str)):
        raise AuditError(f"{head_path}: the head file must hold lines, mac and seal")
    if not hmac.compare_digest(str(data.get("seal", "")), _head_seal(key, data["lines"], data["mac"])):
        raise AuditError(f"{head_path}: the head's seal does not match: the head file was edited")
    return _Head(data["lines"], data["mac"])


def _write_head(head_path: Path, head: _Head, key: bytes, durable: bool) -> None:
    temporary = head_path.with_name(f"{head_path.name}.{os.getpid()}.tmp")
    body = {"lines": head.lines, "mac": head.last, "seal": _head_seal(key, head.lines, head.last)}
    with open(temporary, "w") as handle:
        handle.write(json.dumps(body) + "\n")
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.chmod(temporary, 0o600)
    os.replace(temporary, head_path)  # readers see the old head or the new one, never half


def _last_line(fd: int) -> bytes | None:
    """The last complete line of the open file (without its newline), or None when empty."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    end, chunk = size, b""
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
    """The audit log at ``path`` (created on first append, mode 0600), its head and its key."""

    def __init__(self, path: str | Path, *, key_path: str | Path | None = None, durable: bool = True) -> None:
        self.path = Path(path)
        self.head_path = _head_path(self.path)
        self.key_path = Path(key_path) if key_path else key_path_for(self.path)
        self.durable = durable  # fsync each line and head: an audit trail should survive a crash
        self._syslog = os.environ.get("JEXIDA_AUDIT_SYSLOG", "").lower() in ("1", "true", "yes")

    def append(self, *, face: str, action: str, command: str | None = None, nodes: list[str] | None = None,
               caller: str | None = None, decision: str | None = None, job_id: str | None = None,
               rc: int | None = None, **extra: Any) -> dict[str, Any]:
        """Write one entry (fsynced) and return it as written, with ``ts``, ``prev`` and ``mac``."""
        clashing = sorted(_RESERVED_KEYS & set(extra))
        if clashing:
            raise ValueError(f"audit fields {clashing} are set by the log itself")
        fields: dict[str, Any] = {"face": face, "action": action, "command": command,
                                  "nodes": list(nodes) if nodes is not None else None, "caller": caller,
                                  "decision": decision, "job_id": job_id, "rc": rc, **extra}
        # Round-trip through JSON first so the MAC covers exactly what verify will read back.
        fields = json.loads(json.dumps(fields, default=str, allow_nan=False))
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log {self.path}: {exc.strerror}; nothing was run") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            key = _read_key(self.key_path)
            if key is None and self._set_aside_unkeyed_log(fd):
                os.close(fd)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
            if key is None:
                if os.fstat(fd).st_size or self.head_path.exists():
                    raise AuditError(f"{self.key_path} is missing but {self.path} has entries: the key was deleted. "
                                     "Refusing to append; restore the key, or move the log away to start a new one")
                key = _create_key(self.key_path)
            prev, lines_before = self._chain_end(fd, key)
            entry = {"ts": _now(), **fields, "prev": prev}
            entry["mac"] = entry_mac(key, entry)
            line = _canonical(entry) + b"\n"
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
            if self.durable:
                os.fsync(fd)
            _write_head(self.head_path, _Head(lines_before + 1, entry["mac"]), key, self.durable)
        finally:
            os.close(fd)  # also releases the lock
        if self._syslog:
            import syslog

            syslog.syslog(syslog.LOG_INFO, "jexida-audit " + line.decode().rstrip("\n"))
        return entry

    def _set_aside_unkeyed_log(self, fd: int) -> bool:
        """A log from before the key (version 0.1, plain hash chain) is kept as audit-v1.jsonl, not mixed in."""
        first = os.pread(fd, 4096, 0).split(b"\n", 1)[0]
        try:
            old = b'"hash"' in first and "mac" not in json.loads(first)
        except ValueError:
            return False
        if not old:
            return False
        moved = self.path.with_name(self.path.stem + "-v1" + self.path.suffix)
        os.replace(self.path, moved)
        if self.head_path.exists():
            os.replace(self.head_path, _head_path(moved))
        return True

    def _chain_end(self, fd: int, key: bytes) -> tuple[str, int]:
        """(MAC of the last entry, number of entries), checked against the sealed head. Lock held."""
        head = _read_head(self.head_path, key)
        raw = _last_line(fd)
        if raw is None:
            if head is not None and head.lines:
                raise AuditError(f"{self.path} is empty but its head records {head.lines} lines: the log was "
                                 "truncated. Refusing to append; investigate, then rebuild_head() to re-anchor")
            return GENESIS, 0
        try:
            last = json.loads(raw)
            last_mac, last_prev = str(last["mac"]), str(last["prev"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(f"{self.path}: the last line is not a valid audit entry ({exc}); refusing to append. "
                             "Run `jexida audit verify` to see what is wrong") from exc
        head = head or _Head(0, GENESIS)
        if last_mac == head.last:
            return last_mac, head.lines
        if last_prev == head.last:  # an append died between its line and its head: heal
            return last_mac, head.lines + 1
        raise AuditError(f"{self.path}: the last entry does not match its sealed head (lines were removed from the "
                         "end, or the files were edited). Refusing to append; run `jexida audit verify`")

    def verify(self) -> AuditVerification:
        return verify(self.path, self.key_path)

    def rebuild_head(self) -> AuditVerification:
        """Re-anchor the head on the log as it is now, if its chain verifies: an operator's action."""
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            key = _read_key(self.key_path)
            if key is None:
                return AuditVerification(False, 0, None, f"{self.key_path} is missing: nothing can be re-anchored")
            result, last = _verify_chain(self.path, key)
            if result.ok:
                _write_head(self.head_path, _Head(result.lines, last), key, self.durable)
            return result
        finally:
            os.close(fd)


def _verify_chain(path: Path, key: bytes) -> tuple[AuditVerification, str]:
    prev, count = GENESIS, 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            problem = _line_problem(raw, prev, key)
            if problem:
                return AuditVerification(False, number - 1, number, f"{path}: line {number}: {problem}"), prev
            prev, count = json.loads(raw)["mac"], number
    return AuditVerification(True, count, None, ""), prev


def _line_problem(raw: bytes, prev: str, key: bytes) -> str:
    if not raw.endswith(b"\n"):
        return "incomplete (no newline at the end): the line was cut off"
    try:
        entry = json.loads(raw)
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(entry, dict) or not isinstance(entry.get("mac"), str) or "prev" not in entry:
        return "not an audit entry (needs 'prev' and 'mac')"
    try:
        expected = entry_mac(key, entry)
    except ValueError:  # NaN or Infinity: never written by append
        return "modified: it holds values (NaN, Infinity) the log never writes"
    if not hmac.compare_digest(entry["mac"], expected):
        return "modified or forged: its MAC does not match (written without the audit key)"
    if entry["prev"] != prev:
        return ("does not follow the line before it: a line before it was deleted, or lines were reordered "
                "or inserted")
    return ""


def verify(path: str | Path, key_path: str | Path | None = None) -> AuditVerification:
    """Check every line's MAC and link, and the end of the log against its sealed head."""
    path = Path(path)
    key_path = Path(key_path) if key_path else key_path_for(path)
    head_path = _head_path(path)
    try:
        key = _read_key(key_path)
    except AuditError as exc:
        return AuditVerification(False, 0, None, str(exc))
    if key is None:
        if path.exists() or head_path.exists():
            return AuditVerification(False, 0, None, f"{key_path} is missing: the log cannot be verified "
                                     "(without the key any line could have been written by anyone)")
        return AuditVerification(True, 0, None, "")
    if not path.exists():
        return AuditVerification(False, 0, 1, f"{path}: missing, but its key {key_path} exists: the log was deleted")
    with open(path, "rb") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)  # a consistent view of log and head
        result, last = _verify_chain(path, key)
        if not result.ok:
            return result
        try:
            head = _read_head(head_path, key)
        except AuditError as exc:
            return AuditVerification(False, result.lines, None, str(exc))
        last_prev = ""
        if result.lines:
            fd = os.open(path, os.O_RDONLY)
            try:
                last_prev = str(json.loads(_last_line(fd) or b"{}").get("prev", ""))
            finally:
                os.close(fd)
    lines = result.lines
    if head is None:
        if lines <= 1:
            return result  # a crash before the first head was written
        return AuditVerification(False, lines, None, f"{head_path} is missing: the end of the log cannot be checked")
    if head.lines == lines and head.last == last:
        return result
    if head.lines == lines - 1 and head.last == last_prev:
        return result  # an append died between its line and its head; the next append heals it
    if head.lines > lines:
        return AuditVerification(False, lines, lines + 1,
                                 f"{path}: line {lines + 1}: missing: the sealed head records {head.lines} lines "
                                 f"but the log ends after line {lines}: the last {head.lines - lines} were deleted")
    return AuditVerification(False, lines, None, f"{path}: the log's end (line {lines}) does not match its sealed "
                             f"head ({head.lines} lines): the log was edited")
