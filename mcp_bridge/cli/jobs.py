"""`jexida submit | jobs`: tracked jobs that outlive the command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from mcp_bridge import settings
from mcp_bridge.call import Call
from mcp_bridge.cli.cluster import ClusterFactory, ask, tags
from mcp_bridge.cli.output import print_json, print_table, show_job


def cmd_submit(args: argparse.Namespace, cluster_of: ClusterFactory) -> int:
    cluster = cluster_of(args)
    where = f"node {args.node}" if args.node else "the least loaded capable node"
    call = Call(approval=ask(cluster, args.cmd, where, args.yes))
    info = cluster.jobs.submit(args.cmd, args.node, args.os, args.arch, tags(args.tags), args.description,
                               args.timeout, args.wait, call=call)
    return show_job(info, args.json)


def cmd_jobs(args: argparse.Namespace, cluster_of: ClusterFactory) -> int:
    jobs = cluster_of(args).jobs
    if args.jobs_command == "list":
        listed = jobs.list(args.node, args.status, args.limit)
        if args.json:
            print_json([j.model_dump() for j in listed])
        else:
            print_table(("JOB", "STATUS", "NODE", "RC", "CREATED", "COMMAND"),
                        [(j.job_id, j.status, j.node or "-", "-" if j.rc is None else j.rc, j.created_at,
                          j.command if len(j.command) < 50 else j.command[:47] + "...") for j in listed])
        return 0
    if args.jobs_command == "show":
        info = jobs.get(args.job_id)
        return show_job(jobs.result(args.job_id) if info.status not in ("running", "queued") else info, args.json)
    if args.jobs_command == "wait":
        return show_job(jobs.wait(args.job_id, args.timeout), args.json)
    if args.jobs_command == "output":
        page = jobs.output(args.job_id, args.stream, args.offset, args.limit, args.tail)
        if args.json:
            print_json(page.model_dump())
        else:
            sys.stdout.write(page.data if page.data.endswith("\n") or not page.data else page.data + "\n")
            if page.next_offset is not None:
                print(f"jexida: {page.total_bytes - page.next_offset} more bytes: --offset {page.next_offset}",
                      file=sys.stderr)
        return 0
    if args.jobs_command == "cancel":
        result = jobs.cancel(args.job_id)
        if args.json:
            print_json(result.model_dump())
        else:
            print(f"{result.job_id}: {result.status}: {result.message}")
        return 0
    raise AssertionError(args.jobs_command)


def register(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
             ) -> None:
    submit = common(sub.add_parser("submit", help="start a tracked job that outlives this command"))
    submit.add_argument("cmd", help="the shell command")
    submit.add_argument("--node", help="run on this node instead of routing")
    submit.add_argument("--tags", help="required tags, comma-separated")
    submit.add_argument("--os")
    submit.add_argument("--arch")
    submit.add_argument("--description", default="")
    submit.add_argument("--timeout", type=int, default=settings.JOB_TIMEOUT_S, help="seconds before the job is killed")
    submit.add_argument("--wait", type=float, default=settings.JOB_WAIT_S,
                        help=f"seconds to wait for it to finish (default {settings.JOB_WAIT_S:g})")
    submit.add_argument("--yes", action="store_true", help="accept a command the policy wants a person's yes for")
    submit.set_defaults(func=cmd_submit)

    jobs = sub.add_parser("jobs", help="tracked jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    jobs_list = common(jobs_sub.add_parser("list", help="recent jobs"))
    jobs_list.add_argument("--node")
    jobs_list.add_argument("--status")
    jobs_list.add_argument("--limit", type=int, default=settings.JOB_LIST_LIMIT)
    common(jobs_sub.add_parser("show", help="one job (its result when finished)")).add_argument("job_id")
    jobs_wait = common(jobs_sub.add_parser("wait", help="wait for a job to finish"))
    jobs_wait.add_argument("job_id")
    jobs_wait.add_argument("--timeout", type=float, default=settings.MAX_JOB_WAIT_S, help="seconds to wait at most")
    jobs_output = common(jobs_sub.add_parser("output", help="a job's output, paged or its last lines"))
    jobs_output.add_argument("job_id")
    jobs_output.add_argument("--stream", default="stdout", choices=["stdout", "stderr"])
    jobs_output.add_argument("--offset", type=int, default=0)
    jobs_output.add_argument("--limit", type=int, default=settings.OUTPUT_PAGE_BYTES)
    jobs_output.add_argument("--tail", type=int, help="the last N lines instead")
    common(jobs_sub.add_parser("cancel", help="stop a job's processes on its node")).add_argument("job_id")
    jobs.set_defaults(func=cmd_jobs)
