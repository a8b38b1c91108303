"""The keyed audit log: what it writes, what verify catches (edits, forgeries, deletions), concurrent appends."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest

from mcp_bridge.audit import GENESIS, AuditError, AuditLog, entry_mac, verify

REPO_ROOT = Path(__file__).resolve().parent.parent


def filled(tmp_path: Path, count: int) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl", durable=False)
    for index in range(count):
        log.append(face="mcp", action="run", command=f"echo {index}", nodes=["n1"], caller="agent", rc=0)
    return log


def read_lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines(keepends=True)


def write_lines(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("".join(lines))


def test_entry_fields_and_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "sub" / "audit.jsonl")
    first = log.append(face="cli", action="run", command="uptime", nodes=["n1", "n2"], caller="alice",
                       decision="allowed", job_id="j1", rc=0, duration_ms=12)
    second = log.append(face="mcp", action="policy_denied", command="reboot", decision="power-state")

    key = bytes.fromhex(json.loads(log.key_path.read_text())["key"])
    assert first["prev"] == GENESIS
    assert second["prev"] == first["mac"]
    assert first["mac"] == entry_mac(key, first)
    assert first["duration_ms"] == 12
    assert second["nodes"] is None and second["rc"] is None
    assert first["ts"].endswith("Z")
    assert datetime.fromisoformat(first["ts"].replace("Z", "+00:00")).utcoffset() is not None

    lines = read_lines(log)
    assert [json.loads(line) for line in lines] == [first, second]
    assert lines[0] == json.dumps(first, sort_keys=True, separators=(",", ":")) + "\n"
    assert (log.path.stat().st_mode & 0o777) == 0o600
    assert (log.key_path.stat().st_mode & 0o777) == 0o600 and log.key_path.parent == log.path.parent
    head = json.loads(log.head_path.read_text())
    assert (head["lines"], head["mac"]) == (2, second["mac"])


def test_values_are_stored_as_verify_reads_them(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    entry = log.append(face="cli", action="x", targets=("a", "b"), where=Path("/tmp"), note="héllo")
    assert entry["targets"] == ["a", "b"]
    assert entry["where"] == "/tmp"
    assert verify(log.path).ok


def test_reserved_fields_are_refused(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(ValueError, match="set by the log itself"):
        log.append(face="cli", action="x", mac="0")


def test_long_chain_verifies(tmp_path: Path) -> None:
    log = filled(tmp_path, 300)
    result = verify(log.path)
    assert result.ok, result.problem
    assert (result.lines, result.bad_line, result.problem) == (300, None, "")
    assert log.verify() == result


def test_no_log_is_an_empty_valid_log(tmp_path: Path) -> None:
    result = verify(tmp_path / "never-written.jsonl")
    assert result.ok and result.lines == 0


@pytest.mark.parametrize("k", [1, 17, 40])
def test_edited_line_is_named(tmp_path: Path, k: int) -> None:
    log = filled(tmp_path, 40)
    lines = read_lines(log)
    entry = json.loads(lines[k - 1])
    entry["command"] = "echo innocent"
    lines[k - 1] = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
    write_lines(log, lines)

    result = verify(log.path)
    assert not result.ok
    assert result.bad_line == k
    assert result.lines == k - 1
    assert f"line {k}:" in result.problem and "modified" in result.problem


def test_a_rewritten_chain_without_the_key_is_caught(tmp_path: Path) -> None:
    """Edit a line and recompute every later link with a plain hash (what worked before the key)."""
    log = filled(tmp_path, 10)
    entries = [json.loads(line) for line in read_lines(log)]
    entries[3]["rc"] = 1
    prev = entries[2]["mac"]
    for entry in entries[3:]:
        entry["prev"] = prev
        entry["mac"] = hashlib.sha256(json.dumps({k: v for k, v in entry.items() if k != "mac"}, sort_keys=True,
                                                 separators=(",", ":")).encode()).hexdigest()
        prev = entry["mac"]
    write_lines(log, [json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in entries])
    head = json.loads(log.head_path.read_text())
    log.head_path.write_text(json.dumps({**head, "mac": prev}))
    result = verify(log.path)
    assert not result.ok and result.bad_line == 4
    assert "line 4:" in result.problem and "forged" in result.problem


def test_one_forged_line_appended_is_caught(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    last = json.loads(read_lines(log)[-1])
    forged = {**last, "ts": last["ts"], "command": "echo nothing to see", "prev": last["mac"]}
    forged["mac"] = hashlib.sha256(b"a guess").hexdigest()
    with open(log.path, "a") as handle:
        handle.write(json.dumps(forged, sort_keys=True, separators=(",", ":")) + "\n")
    result = verify(log.path)
    assert not result.ok and result.bad_line == 6 and "forged" in result.problem


def test_a_deleted_key_is_reported_and_stops_appends(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    log.key_path.unlink()
    result = verify(log.path)
    assert not result.ok and "key" in result.problem and "missing" in result.problem
    with pytest.raises(AuditError, match="key was deleted"):
        log.append(face="cli", action="x")


def test_log_and_head_deleted_together_are_reported_while_the_key_remains(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    log.path.unlink()
    log.head_path.unlink()
    result = verify(log.path)
    assert not result.ok and "the log was deleted" in result.problem


def test_every_line_can_also_go_to_syslog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import syslog

    sent: list[str] = []
    monkeypatch.setattr(syslog, "syslog", lambda priority, message: sent.append(message))
    monkeypatch.setenv("JEXIDA_AUDIT_SYSLOG", "1")
    log = AuditLog(tmp_path / "audit.jsonl", durable=False)
    entry = log.append(face="cli", action="run", command="uptime")
    assert len(sent) == 1 and sent[0].startswith("jexida-audit ")
    assert json.loads(sent[0].removeprefix("jexida-audit ")) == entry


@pytest.mark.parametrize("k", [1, 6, 9])
def test_deleted_line_is_caught_at_the_line_after_it(tmp_path: Path, k: int) -> None:
    log = filled(tmp_path, 10)
    lines = read_lines(log)
    del lines[k - 1]
    write_lines(log, lines)
    result = verify(log.path)
    # The line that followed the deleted one now sits at position k and no longer links up.
    assert not result.ok
    assert result.bad_line == k
    assert f"line {k}:" in result.problem and "deleted" in result.problem


def test_reordered_lines_are_caught(tmp_path: Path) -> None:
    log = filled(tmp_path, 10)
    lines = read_lines(log)
    lines[4], lines[5] = lines[5], lines[4]
    write_lines(log, lines)
    result = verify(log.path)
    assert result.bad_line == 5
    assert "reordered" in result.problem


def test_malformed_json_is_named(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    lines = read_lines(log)
    lines[2] = lines[2][:30] + "\n"
    write_lines(log, lines)
    result = verify(log.path)
    assert result.bad_line == 3
    assert "line 3:" in result.problem and "not valid JSON" in result.problem


def test_line_cut_mid_way_is_caught(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    log.path.write_bytes(log.path.read_bytes()[:-20])
    result = verify(log.path)
    assert result.bad_line == 5
    assert "cut off" in result.problem


@pytest.mark.parametrize("removed", [1, 3])
def test_deleting_the_last_lines_is_caught_by_the_head(tmp_path: Path, removed: int) -> None:
    log = filled(tmp_path, 10)
    write_lines(log, read_lines(log)[:-removed])
    result = verify(log.path)
    assert not result.ok
    assert result.lines == 10 - removed
    assert result.bad_line == 10 - removed + 1
    assert f"the last {removed} were deleted" in result.problem


def test_emptied_or_deleted_log_is_caught(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    log.path.write_text("")
    assert not verify(log.path).ok
    with pytest.raises(AuditError, match="truncated"):
        log.append(face="cli", action="x")
    log.path.unlink()
    result = verify(log.path)
    assert not result.ok and "deleted" in result.problem


def test_append_refuses_to_paper_over_a_truncation(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    write_lines(log, read_lines(log)[:-1])
    with pytest.raises(AuditError, match="Refusing to append"):
        log.append(face="cli", action="after-truncation")
    assert len(read_lines(log)) == 4  # nothing was written

    # After an investigation the operator re-anchors explicitly, and the log goes on.
    assert log.rebuild_head().ok
    log.append(face="cli", action="after-reanchor")
    result = verify(log.path)
    assert result.ok and result.lines == 5


def test_head_one_entry_behind_is_a_crash_and_heals(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    head_before = log.head_path.read_text()
    log.append(face="cli", action="x")
    log.head_path.write_text(head_before)  # as if the process died before updating the head
    assert verify(log.path).ok
    log.append(face="cli", action="y")
    assert json.loads(log.head_path.read_text())["lines"] == 5
    assert verify(log.path).ok


def test_crash_before_the_first_head_is_accepted(tmp_path: Path) -> None:
    log = filled(tmp_path, 1)
    log.head_path.unlink()
    assert verify(log.path).ok
    log.append(face="cli", action="x")
    assert verify(log.path).lines == 2


def test_edited_head_is_caught(tmp_path: Path) -> None:
    log = filled(tmp_path, 4)
    head = json.loads(log.head_path.read_text())
    log.head_path.write_text(json.dumps({**head, "lines": 2}))  # as if 2 lines were all there ever was
    result = verify(log.path)
    assert not result.ok and "seal does not match" in result.problem
    log.head_path.write_text("garbage")
    assert not verify(log.path).ok
    with pytest.raises(AuditError, match="head"):
        log.append(face="cli", action="x")


def test_garbage_last_line_stops_appends(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    with open(log.path, "a") as handle:
        handle.write("not json\n")
    with pytest.raises(AuditError, match="not a valid audit entry"):
        log.append(face="cli", action="x")


def test_long_entries_chain_through_the_tail_reader(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", durable=False)
    for size in (10, 200_000, 70_000, 5):
        log.append(face="cli", action="run", command="x" * size)
    result = verify(log.path)
    assert result.ok and result.lines == 4


def test_concurrent_threads(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    def worker(name: str) -> None:
        log = AuditLog(path, durable=False)  # each thread its own instance, like separate requests
        for index in range(25):
            log.append(face="mcp", action="run", caller=name, seq=index)

    threads = [threading.Thread(target=worker, args=(f"t{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = verify(path)
    assert result.ok, result.problem
    assert result.lines == 200


_APPENDER = """
import sys
from mcp_bridge.audit import AuditLog
log = AuditLog(sys.argv[1])
sys.stdin.readline()  # wait for the go signal so that all processes append at once
for index in range(50):
    log.append(face="cli", action="run", caller=sys.argv[2], seq=index)
"""


def test_concurrent_processes(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, str(path), f"p{n}"],
            stdin=subprocess.PIPE, cwd=REPO_ROOT, text=True,
        )
        for n in range(4)
    ]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.close()
    for process in processes:
        assert process.wait(timeout=120) == 0

    result = verify(path)
    assert result.ok, result.problem
    assert result.lines == 200
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((e["caller"], e["seq"]) for e in entries) == sorted(
        (f"p{n}", i) for n in range(4) for i in range(50)
    )
    # Each process's own entries stay in its order.
    for n in range(4):
        assert [e["seq"] for e in entries if e["caller"] == f"p{n}"] == list(range(50))
    assert json.loads(Path(f"{path}.head").read_text())["lines"] == 200
