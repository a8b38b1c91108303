"""The node-side snippets of tracked jobs: POSIX sh files beside this module, filled in per call.

They live in files (start.sh, run.sh, poll.sh, cancel.sh, collect.sh, read.sh) so shellcheck
can read them; comment lines are dropped before a snippet is sent. Every value put into a
snippet is either checked here (job ids, numbers) or shell-quoted (the node's folders).
"""

from __future__ import annotations

import base64
import shlex
from functools import cache
from pathlib import Path

from mcp_bridge.jobs.models import check_job_id

HERE = Path(__file__).resolve().parent
STREAM_END = "@@JEXIDA-STREAM-END@@"


@cache
def _template(name: str) -> str:
    lines = (HERE / name).read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#")) + "\n"


def _fill(name: str, job_dir: str, log_dir: str, **values: object) -> str:
    text = _template(name).replace("@JOB_DIR@", shlex.quote(job_dir)).replace("@LOG_DIR@", shlex.quote(log_dir))
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    return text


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def start(job_dir: str, log_dir: str, job_id: str, command: str, timeout_s: int) -> str:
    return _fill("start.sh", job_dir, log_dir, ID=check_job_id(job_id), B64=_b64(command),
                 RUN_B64=_b64(_template("run.sh")), T=int(timeout_s))


def poll(job_dir: str, log_dir: str, job_ids: list[str]) -> str:
    return _fill("poll.sh", job_dir, log_dir, IDS=" ".join(check_job_id(j) for j in job_ids))


def cancel(job_dir: str, log_dir: str, job_id: str) -> str:
    return _fill("cancel.sh", job_dir, log_dir, ID=check_job_id(job_id))


def collect(job_dir: str, log_dir: str, job_id: str, cap: int) -> str:
    return _fill("collect.sh", job_dir, log_dir, ID=check_job_id(job_id), CAP=int(cap), HALF=int(cap) // 2)


def read(job_dir: str, log_dir: str, job_id: str, stream: str, offset: int, limit: int, tail: int | None) -> str:
    name = f"{check_job_id(job_id)}{'.log' if stream == 'stdout' else '.err.log'}"
    return _fill("read.sh", job_dir, log_dir, FILE=name, TAIL=int(tail or 0), FROM=int(offset) + 1,
                 LIMIT=int(limit))
