"""The pages people read: nodes, one node, jobs, one job, a job's full log, the audit.

Each one reads the core (the same methods the MCP tools and the CLI call) in a worker thread
and renders a template; everything is readable without JavaScript.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, get_args

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_bridge import settings
from mcp_bridge.errors import JexidaError
from mcp_bridge.jobs.models import FINISHED, JobStatus
from mcp_bridge.web.context import Web, page

STREAMS = ("stdout", "stderr")


def tail_lines(path: Path, count: int, block: int = 64 * 1024) -> list[str]:
    """The last ``count`` lines of a file, read from its end (the audit log only grows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return []
    try:
        end = os.fstat(fd).st_size
        data = b""
        while end > 0 and data.count(b"\n") <= count:
            start = max(0, end - block)
            data = os.pread(fd, end - start, start) + data
            end = start
    finally:
        os.close(fd)
    return [line.decode(errors="replace") for line in data.splitlines()[-count:]]


def audit_rows(lines: list[str]) -> list[dict[str, Any]]:
    """Audit lines as table rows, newest first (a line that is not a JSON object is shown as it is)."""
    main = ("ts", "face", "action", "phase", "command", "nodes")
    rows = []
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            rows.append({**dict.fromkeys(main), "rest": "", "raw": line})
            continue
        rest = {k: v for k, v in entry.items() if k not in (*main, "prev", "mac", "caller") and v is not None}
        rows.append({**{k: entry.get(k) for k in main}, "raw": None,
                     "rest": ", ".join(f"{k}={v}" for k, v in rest.items())})
    return rows


def _offset(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


def routes(web: Web) -> list[Route]:
    cluster = web.cluster

    @page(web)
    async def nodes(request: Request) -> Response:
        fresh = request.query_params.get("fresh") == "1"  # the Refresh link probes every node now
        status = await web.core(lambda: cluster.status(fresh))
        session = web.session(request)
        return web.page(request, "nodes.html", cluster_status=status, checks=session.checks if session else {},
                        fresh=fresh)

    @page(web)
    async def node(request: Request) -> Response:
        name = request.path_params["name"]
        info = await web.core(lambda: cluster.get_node(name))
        jobs = await web.core(lambda: cluster.jobs.list(name, None, settings.JOB_LIST_LIMIT))
        session = web.session(request)
        return web.page(request, "node.html", node=info, jobs=jobs,
                        check=(session.checks.get(name) if session else None))

    @page(web)
    async def jobs(request: Request) -> Response:
        node_name = request.query_params.get("node") or None
        status = request.query_params.get("status") or None
        problem = ""
        try:
            found = await web.core(lambda: cluster.jobs.list(node_name, status, settings.JOB_LIST_LIMIT))
        except JexidaError as exc:  # a bad filter: say so above an empty list
            found, problem = [], str(exc)
        try:
            names = sorted(n.name for n in await web.core(lambda: cluster.list_nodes(False)))
        except JexidaError:  # the filter still works by typed name
            names = []
        return web.page(request, "jobs.html", jobs=found, node_name=node_name or "", status_filter=status or "",
                        statuses=get_args(JobStatus), node_names=names, problem=problem)

    @page(web)
    async def job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        info = await web.core(lambda: cluster.jobs.get(job_id))
        stdout = await web.core(lambda: cluster.jobs.output(job_id, "stdout", tail=settings.JOB_TAIL_LINES))
        stderr = None
        if info.stderr_bytes:
            stderr = await web.core(lambda: cluster.jobs.output(job_id, "stderr", tail=settings.JOB_TAIL_LINES))
        # Live output goes on from the end of what is shown, while the job runs (see live.py).
        follow = info.status not in FINISHED and stdout.source == "node"
        return web.page(request, "job.html", job=info, stdout=stdout, stderr=stderr, follow=follow,
                        finished=info.status in FINISHED)

    @page(web)
    async def log(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        stream = request.query_params.get("stream", "stdout")
        stream = stream if stream in STREAMS else "stdout"
        offset = _offset(request.query_params.get("offset"))
        size = settings.OUTPUT_PAGE_BYTES
        chunk = await web.core(lambda: cluster.jobs.output(job_id, stream, offset, size))
        previous = max(0, offset - size) if offset > 0 else None
        return web.page(request, "log.html", job_id=job_id, stream=stream, chunk=chunk, previous=previous,
                        streams=STREAMS)

    @page(web)
    async def audit(request: Request) -> Response:
        log = cluster.audit
        lines = await web.core(lambda: tail_lines(log.path, settings.AUDIT_PAGE_LINES))
        verification = await web.core(log.verify)
        return web.page(request, "audit.html", rows=audit_rows(lines), verification=verification,
                        audit_path=str(log.path), shown=len(lines))

    return [
        Route("/", nodes, methods=["GET"]),
        Route("/nodes/{name}", node, methods=["GET"]),
        Route("/jobs", jobs, methods=["GET"]),
        Route("/jobs/{job_id}", job, methods=["GET"]),
        Route("/jobs/{job_id}/log", log, methods=["GET"]),
        Route("/audit", audit, methods=["GET"]),
    ]
