"""How the CLI prints results and which exit code each outcome gets."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from mcp_bridge import models
from mcp_bridge.jobs import JobInfo, JobResult

# Exit codes for outcomes that are not the remote command's own rc.
EXIT_USAGE = 2
EXIT_ERROR = 3  # bad input: unknown node, bad registry, bad policy file... (the message says which)
EXIT_REJECTED = 126  # the policy refused the command, or a person declined it (like a shell's "cannot execute")
EXIT_UNREACHABLE = 125  # no node could run it
EXIT_TIMEOUT = 124  # like timeout(1)
EXIT_INTERRUPTED = 130


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def exit_code(result: models.CommandResult) -> int:
    if result.status in ("rejected", "declined"):
        return EXIT_REJECTED
    if result.status == "unreachable":
        return EXIT_UNREACHABLE
    if result.status == "timeout":
        return EXIT_TIMEOUT
    if result.status == "canceled":
        return EXIT_INTERRUPTED
    return result.rc if result.rc is not None else EXIT_ERROR


def show_result(result: models.CommandResult, as_json: bool, header: bool = False) -> int:
    if as_json:
        print_json(result.model_dump())
        return exit_code(result)
    if header:
        print(f"== {result.node or '-'}: {result.status} (rc={result.rc})")
    if result.stdout:
        sys.stdout.write(result.stdout if result.stdout.endswith("\n") else result.stdout + "\n")
    sys.stdout.flush()  # keep the command's output before our notes on a shared terminal
    if result.stderr:
        sys.stderr.write(result.stderr if result.stderr.endswith("\n") else result.stderr + "\n")
    if result.status != "succeeded" or not header:
        where = f" on {result.node}" if result.node else ""
        note = f": {result.message}" if result.message else ""
        rule = f" [rule {result.rule}]" if result.rule else ""
        print(f"jexida: {result.status}{where} rc={result.rc} in {result.duration_ms} ms{rule}{note}", file=sys.stderr)
        if result.routing and not header:
            print(f"jexida: routing: {result.routing.reason}", file=sys.stderr)
    return exit_code(result)


NODE_HEADERS = ("NODE", "ADDRESS", "USER", "TAGS", "HEALTH", "LOAD GROUP", "LOAD/CPUS", "MEM", "JOBS")


def node_rows(nodes: list[models.NodeInfo]) -> list[tuple[object, ...]]:
    rows = []
    for n in nodes:
        f = n.facts
        load = f"{f.load_1:.2f}/{f.cpus}" if f.load_1 is not None and f.cpus else "-"
        mem = f"{f.mem_used_pct:.0f}%" if f.mem_used_pct is not None else "-"
        rows.append((n.name, f"{n.host}:{n.port}", n.user, ",".join(n.tags) or "-", n.health,
                     f.load_group or "-", load, mem, (f.running_jobs or 0) + n.jobs_in_flight))
    return rows


def show_job(info: JobInfo, as_json: bool) -> int:
    if as_json:
        print_json(info.model_dump())
    else:
        print(f"{info.job_id}  {info.status}  node={info.node}  rc={info.rc}  started={info.started_at}  "
              f"ended={info.ended_at}  stdout={info.stdout_bytes}B stderr={info.stderr_bytes}B")
        if info.error:
            print(f"  reason: {info.error}")
        if isinstance(info, JobResult):
            if info.stdout:
                print(info.stdout)
            if info.stderr:
                print(info.stderr, file=sys.stderr)
        elif info.last_lines:
            print("\n".join(f"  | {line}" for line in info.last_lines))
    if info.status in ("running", "queued"):
        return 0
    if info.status in ("succeeded", "failed"):
        return info.rc if info.rc is not None else EXIT_ERROR
    return {"timeout": EXIT_TIMEOUT, "canceled": EXIT_INTERRUPTED, "lost": EXIT_UNREACHABLE,
            "rejected": EXIT_REJECTED, "declined": EXIT_REJECTED}.get(info.status, EXIT_ERROR)
