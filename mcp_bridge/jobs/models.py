"""The job records as every face shows them, and job ids."""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from mcp_bridge.errors import JexidaError

JOB_ID = re.compile(r"^j-\d{8}-\d{6}-[0-9a-f]{6}$")
# rejected / declined: the policy refused the command, or a person said no; it never started.
JobStatus = Literal["queued", "running", "succeeded", "failed", "timeout", "canceled", "lost", "rejected", "declined"]
FINISHED: tuple[str, ...] = ("succeeded", "failed", "timeout", "canceled", "lost", "rejected", "declined")


def new_job_id() -> str:
    return f"j-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def check_job_id(job_id: str) -> str:
    if not JOB_ID.match(job_id or ""):
        raise JobError(f"bad job id {job_id!r}: job ids look like j-20261121-060000-a1b2c3 (see list_jobs)")
    return job_id


def now_utc() -> str:
    """The time as every job and page shows it: UTC, ISO 8601, seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _when(stamp: str | None) -> datetime:
    """An ISO 8601 time (ours or the probe's) as an aware datetime; the epoch when unknown."""
    if not stamp:
        return _EPOCH
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return _EPOCH
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class JobError(JexidaError):
    """Bad input about a job: unknown id, bad stream, ...; the message says what to do."""


class UnknownJob(JobError, LookupError):
    """No job has this id (a LookupError, as an unknown node is: the HTTP faces answer 404)."""


class JobInfo(BaseModel):
    job_id: str
    status: JobStatus
    node: str | None
    command: str
    description: str = ""
    rc: int | None = None
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    timeout_s: int
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    last_lines: list[str] = Field(default_factory=list, description="the end of stdout (from the collected output)")
    error: str | None = Field(None, description="why a job is lost, failed to start, or was refused; a note when "
                                                "a person's yes or the policy's fallback let it run")
    routing_reason: str | None = None


class JobResult(JobInfo):
    """A finished job with its collected output (capped: head and tail; the full log stays on the node)."""

    stdout: str = ""
    stderr: str = ""
    truncated: bool = False


class JobOutput(BaseModel):
    job_id: str
    stream: Literal["stdout", "stderr"]
    offset: int
    data: str
    bytes_returned: int
    total_bytes: int
    next_offset: int | None = Field(None, description="pass as offset to read on; null at the end")
    source: Literal["node", "collected"]


class CancelResult(BaseModel):
    job_id: str
    status: JobStatus
    canceled: bool
    message: str
