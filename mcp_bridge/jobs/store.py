"""The controller's job records: SQLite in WAL mode under the state folder."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mcp_bridge import settings
from mcp_bridge.jobs.models import FINISHED, JobInfo, JobResult, UnknownJob, check_job_id

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, node TEXT, command TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL, rc INTEGER, created_at TEXT NOT NULL, started_at TEXT, ended_at TEXT,
    timeout_s INTEGER NOT NULL, pid INTEGER, stdout_bytes INTEGER NOT NULL DEFAULT 0,
    stderr_bytes INTEGER NOT NULL DEFAULT 0, stdout TEXT NOT NULL DEFAULT '', stderr TEXT NOT NULL DEFAULT '',
    truncated INTEGER NOT NULL DEFAULT 0, error TEXT, routing_reason TEXT, last_line TEXT NOT NULL DEFAULT '',
    collecting REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status);
CREATE INDEX IF NOT EXISTS jobs_by_node ON jobs(node);
"""


class JobStore:
    """The controller's job records: SQLite in WAL mode, one connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self.db() as db:
            db.executescript(_SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            if "collecting" not in columns:  # records made by version 0.1
                db.execute("ALTER TABLE jobs ADD COLUMN collecting INTEGER NOT NULL DEFAULT 0")

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        yield conn

    def insert(self, **fields: Any) -> None:
        keys = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        with self.db() as db:
            db.execute(f"INSERT INTO jobs ({keys}) VALUES ({marks})", tuple(fields.values()))

    def update(self, job_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{key} = ?" for key in fields)
        with self.db() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE job_id = ?", (*fields.values(), job_id))

    def claim_collection(self, job_id: str) -> bool:
        """True for exactly one caller (thread or process) per ended job: the one that collects it.

        The claim holds its time: a collector that died with it (a killed bridge) does not keep the
        job "running" for ever; after settings.COLLECT_CLAIM_S another caller may collect."""
        now = time.time()
        with self.db() as db:
            return db.execute("UPDATE jobs SET collecting = ? WHERE job_id = ? AND status = 'running' "
                              "AND collecting < ?", (now, job_id, now - settings.COLLECT_CLAIM_S)).rowcount == 1

    def get(self, job_id: str) -> sqlite3.Row:
        with self.db() as db:
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (check_job_id(job_id),)).fetchone()
        if row is None:
            raise UnknownJob(f"unknown job {job_id!r}: list_jobs shows the known ones")
        return row

    def select(self, where: str = "1", params: tuple[Any, ...] = (), limit: int = 1000) -> list[sqlite3.Row]:
        with self.db() as db:
            return db.execute(f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC, job_id DESC LIMIT ?",
                              (*params, limit)).fetchall()

    def purge(self, older_than_days: float) -> int:
        cutoff = (datetime.now(UTC) - timedelta(days=older_than_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        marks = ",".join("?" for _ in FINISHED)
        with self.db() as db:
            return db.execute(f"DELETE FROM jobs WHERE status IN ({marks}) AND created_at < ?",
                              (*FINISHED, cutoff)).rowcount


def row_to_info(row: sqlite3.Row, model: type[JobInfo] = JobInfo) -> JobInfo:
    stdout = row["stdout"] or ""
    last = stdout.splitlines()[-5:] if stdout else ([row["last_line"]] if row["last_line"] else [])
    data: dict[str, Any] = dict(
        job_id=row["job_id"], status=row["status"], node=row["node"], command=row["command"],
        description=row["description"], rc=row["rc"], created_at=row["created_at"], started_at=row["started_at"],
        ended_at=row["ended_at"], timeout_s=row["timeout_s"], stdout_bytes=row["stdout_bytes"],
        stderr_bytes=row["stderr_bytes"], last_lines=last, error=row["error"], routing_reason=row["routing_reason"],
    )
    if model is JobResult:
        data.update(stdout=stdout, stderr=row["stderr"] or "", truncated=bool(row["truncated"]))
    return model(**data)
