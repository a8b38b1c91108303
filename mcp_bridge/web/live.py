"""A running job's output, live: server-sent events that follow its stdout log on the node.

The browser's EventSource reconnects by itself after a dropped connection and sends the last
event id, which is the byte offset read so far, so nothing is shown twice or missed. Status
comes from the job records (the job monitor keeps them current); output from the node's log
(``jobs.output``, one Ansible run per read), once per poll interval while nothing new comes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from mcp_bridge import settings
from mcp_bridge.errors import JexidaError
from mcp_bridge.jobs.models import FINISHED
from mcp_bridge.web.context import Web, page

STATUS_FIELDS = ("job_id", "status", "node", "rc", "started_at", "ended_at", "stdout_bytes", "stderr_bytes", "error")


def event(name: str, data: dict[str, Any], event_id: int | None = None) -> str:
    """One server-sent event (the JSON is one line, so one ``data:`` field holds it)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data)}\n\n"


def start_offset(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("offset") or "0"
    try:
        return max(0, int(raw))
    except ValueError:
        return 0


def routes(web: Web) -> list[Route]:
    jobs = web.cluster.jobs
    interval = web.cluster.config.settings.job_poll_interval_s

    async def follow(job_id: str, offset: int) -> AsyncIterator[str]:
        last_status: str | None = None
        while True:
            try:
                # The record first, then the log: a job seen finished here has written all its output.
                info = await web.core(lambda: jobs.result(job_id))
                read = functools.partial(jobs.output, job_id, "stdout", offset, settings.OUTPUT_PAGE_BYTES)
                chunk = await web.core(read)
            except JexidaError as exc:
                yield event("problem", {"error": str(exc)})
                yield event("end", {})
                return
            if chunk.source == "node" and chunk.bytes_returned:
                offset = chunk.offset + chunk.bytes_returned
                yield event("output", {"data": chunk.data, "offset": offset}, offset)
            if info.status != last_status:
                last_status = info.status
                yield event("status", {k: getattr(info, k) for k in STATUS_FIELDS})
            caught_up = chunk.source != "node" or chunk.next_offset is None
            if info.status in FINISHED and caught_up:
                yield event("end", {"status": info.status})
                return
            if caught_up:
                await anyio.sleep(interval)

    @page(web)
    async def events(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        await web.core(lambda: jobs.result(job_id))  # an unknown job is a 404 page, not an empty stream
        return StreamingResponse(follow(job_id, start_offset(request)), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    return [Route("/jobs/{job_id}/events", events, methods=["GET"])]
