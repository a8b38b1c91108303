"""The `jexida` command: a thin face over the same core the MCP server uses."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from mcp_bridge import lab, models
from mcp_bridge.core import BridgeConfig, BridgeError, Cluster
from mcp_bridge.jobs import JobError, JobInfo, JobResult
from mcp_bridge.nodes import NodeError

# Exit codes for outcomes that are not the remote command's own rc.
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_REJECTED = 126  # the policy refused the command (like a shell's "cannot execute")
EXIT_UNREACHABLE = 125  # no node could run it
EXIT_TIMEOUT = 124  # like timeout(1)


def _print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# --- lab ------------------------------------------------------------------------------------


def _show_lab(status: lab.LabStatus, as_json: bool) -> int:
    healthy = status.all_up or not status.nodes
    if as_json:
        _print_json(status.to_dict())
        return 0 if healthy else 1
    print(f"lab {status.name}: {len(status.nodes)} node(s), image {status.image}")
    print(f"inventory: {status.inventory}")
    rows = [
        (n.name, f"{n.address}:{n.port}", n.state, "up" if n.up else "DOWN", n.container)
        for n in status.nodes
    ]
    if rows:
        _print_table(("NODE", "SSH", "CONTAINER STATE", "HEALTH", "CONTAINER"), rows)
    return 0 if healthy else 1


def cmd_lab(args: argparse.Namespace) -> int:
    if args.lab_command == "up":
        return _show_lab(lab.up(args.name, nodes=args.nodes, base_address=args.base_address), args.json)
    if args.lab_command == "status":
        return _show_lab(lab.status(args.name), args.json)
    if args.lab_command == "down":
        removed = lab.down(args.name)
        if args.json:
            _print_json({"lab": args.name, "removed": removed})
        else:
            print(f"lab {args.name}: removed {len(removed)} container(s)")
        return 0
    raise AssertionError(args.lab_command)


# --- cluster commands -------------------------------------------------------------------


def _cluster(args: argparse.Namespace) -> Cluster:
    return Cluster(BridgeConfig.from_env(args.inventory, face="cli"))


def _exit_code(result: models.CommandResult) -> int:
    if result.status == "rejected":
        return EXIT_REJECTED
    if result.status == "unreachable":
        return EXIT_UNREACHABLE
    if result.status == "timeout":
        return EXIT_TIMEOUT
    return result.rc if result.rc is not None else EXIT_ERROR


def _show_result(result: models.CommandResult, as_json: bool, header: bool = False) -> int:
    if as_json:
        _print_json(result.model_dump())
        return _exit_code(result)
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
    return _exit_code(result)


def _tags(value: str | None) -> list[str]:
    return [t.strip() for t in (value or "").split(",") if t.strip()]


def cmd_run(args: argparse.Namespace) -> int:
    if args.node:
        # A named node needs no live facts: list the registry without probing every node.
        os.environ.setdefault("JEXIDA_INVENTORY_PROBE", "false")
    cluster = _cluster(args)
    if args.node:
        result = cluster.offload(args.cmd, args.node, args.timeout)
    else:
        result = cluster.run(args.cmd, args.os, args.arch, _tags(args.tags), args.timeout)
    return _show_result(result, args.json)


def cmd_broadcast(args: argparse.Namespace) -> int:
    outcome = _cluster(args).broadcast(args.cmd, args.pattern, args.timeout)
    if args.json:
        _print_json(outcome.model_dump())
    else:
        for result in outcome.results:
            _show_result(result, False, header=True)
        print(f"jexida: {outcome.succeeded} succeeded, {outcome.failed} failed on {len(outcome.matched)} node(s)",
              file=sys.stderr)
    return 0 if outcome.failed == 0 else 1


def _node_rows(nodes: list[models.NodeInfo]) -> list[tuple[object, ...]]:
    rows = []
    for n in nodes:
        f = n.facts
        load = f"{f.load_1:.2f}/{f.cpus}" if f.load_1 is not None and f.cpus else "-"
        mem = f"{f.mem_used_pct:.0f}%" if f.mem_used_pct is not None else "-"
        rows.append((n.name, f"{n.host}:{n.port}", n.user, ",".join(n.tags) or "-", n.health,
                     f.load_group or "-", load, mem, (f.running_jobs or 0) + n.jobs_in_flight))
    return rows


NODE_HEADERS = ("NODE", "ADDRESS", "USER", "TAGS", "HEALTH", "LOAD GROUP", "LOAD/CPUS", "MEM", "JOBS")


def cmd_status(args: argparse.Namespace) -> int:
    status = _cluster(args).status(fresh=True)
    if args.json:
        _print_json(status.model_dump())
        return 0
    _print_table(NODE_HEADERS, _node_rows(status.nodes))
    print(f"\n{status.total} node(s): {status.available} available, {status.overloaded} overloaded, "
          f"{status.unreachable} unreachable, {status.inactive} inactive; {status.jobs_in_flight} in flight")
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    if args.nodes_command == "list":
        nodes = cluster.list_nodes(active_only=not args.all, tag=args.tag)
        if args.json:
            _print_json([n.model_dump() for n in nodes])
        else:
            _print_table(NODE_HEADERS, _node_rows(nodes))
        return 0
    if args.nodes_command == "show":
        _print_json(cluster.get_node(args.name).model_dump())
        return 0
    if args.nodes_command == "check":
        check = cluster.check_node(args.name, detailed=args.detailed)
        if args.json:
            _print_json(check.model_dump())
        else:
            state = "reachable" if check.reachable else f"UNREACHABLE: {check.error}"
            print(f"{check.name}: {state}, {check.latency_ms} ms")
            if args.detailed and check.reachable:
                print(f"  python {check.python_version}, disk free {check.disk_free_mb} MB, memory "
                      f"{check.mem_available_mb}/{check.mem_total_mb} MB available, job dirs "
                      f"{'writable' if check.job_dirs_writable else 'NOT writable: ' + check.detail}")
        return 0 if check.reachable and check.job_dirs_writable is not False else 1
    if args.nodes_command == "add":
        registered = cluster.register_node(args.name, args.host, args.user, args.port, _tags(args.tags),
                                           not args.inactive)
        if args.json:
            _print_json(registered.model_dump())
        else:
            verb = "added" if registered.created else ("updated" if registered.changed else "unchanged")
            print(f"{registered.name}: {verb} in {registered.registry}")
        return 0
    if args.nodes_command == "remove":
        cluster.remove_node(args.name)
        print(f"{args.name}: removed from {cluster.registry_path()}")
        return 0
    raise AssertionError(args.nodes_command)


def cmd_provision(args: argparse.Namespace) -> int:
    result = _cluster(args).provision(args.name, dry_run=not args.apply)
    if args.json:
        _print_json(result.model_dump())
    else:
        for task in result.tasks:
            print(f"{task.status:<12} {task.task}" + (f": {task.message}" if task.status == "failed" else ""))
        print(f"{result.name}: {'ok' if result.ok else 'FAILED'} ({'dry run' if result.dry_run else 'applied'}) "
              f"{result.message}")
    return 0 if result.ok else 1


def _show_job(info: JobInfo, as_json: bool) -> int:
    if as_json:
        _print_json(info.model_dump())
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
    return {"timeout": EXIT_TIMEOUT, "canceled": 130, "lost": EXIT_UNREACHABLE}.get(info.status, EXIT_ERROR)


def cmd_submit(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    info = cluster.jobs.submit(args.cmd, args.node, args.os, args.arch, _tags(args.tags), args.description,
                               args.timeout, args.wait)
    return _show_job(info, args.json)


def cmd_jobs(args: argparse.Namespace) -> int:
    jobs = _cluster(args).jobs
    if args.jobs_command == "list":
        listed = jobs.list(args.node, args.status, args.limit)
        if args.json:
            _print_json([j.model_dump() for j in listed])
        else:
            _print_table(("JOB", "STATUS", "NODE", "RC", "CREATED", "COMMAND"),
                         [(j.job_id, j.status, j.node or "-", "-" if j.rc is None else j.rc, j.created_at,
                           j.command if len(j.command) < 50 else j.command[:47] + "...") for j in listed])
        return 0
    if args.jobs_command == "show":
        info = jobs.get(args.job_id)
        return _show_job(jobs.result(args.job_id) if info.status not in ("running", "queued") else info, args.json)
    if args.jobs_command == "wait":
        return _show_job(jobs.wait(args.job_id, args.timeout), args.json)
    if args.jobs_command == "output":
        page = jobs.output(args.job_id, args.stream, args.offset, args.limit, args.tail)
        if args.json:
            _print_json(page.model_dump())
        else:
            sys.stdout.write(page.data if page.data.endswith("\n") or not page.data else page.data + "\n")
            if page.next_offset is not None:
                print(f"jexida: {page.total_bytes - page.next_offset} more bytes: --offset {page.next_offset}",
                      file=sys.stderr)
        return 0
    if args.jobs_command == "cancel":
        result = jobs.cancel(args.job_id)
        if args.json:
            _print_json(result.model_dump())
        else:
            print(f"{result.job_id}: {result.status}: {result.message}")
        return 0
    raise AssertionError(args.jobs_command)


def cmd_audit(args: argparse.Namespace) -> int:
    from mcp_bridge import audit
    from mcp_bridge.paths import jexida_home

    path = args.path or str(jexida_home() / "audit.jsonl")
    result = audit.verify(path)
    if args.json:
        _print_json({"path": path, **result.__dict__})
    elif result.ok:
        print(f"{path}: ok, {result.lines} line(s), hash chain intact")
    else:
        print(f"{path}: BROKEN at line {result.bad_line}: {result.problem}")
    return 0 if result.ok else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from mcp_bridge.server import serve

    serve(args.inventory, http=args.http, host=args.host, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jexida", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    lab_parser = sub.add_parser("lab", help="a lab of real worker nodes (podman containers with sshd)")
    lab_sub = lab_parser.add_subparsers(dest="lab_command", required=True)
    for name, help_text in (
        ("up", "start (or keep) the lab's nodes"),
        ("status", "show the lab's nodes and whether they answer SSH"),
        ("down", "remove the lab's containers and state"),
    ):
        p = lab_sub.add_parser(name, help=help_text)
        p.add_argument("--name", default="default", help="lab name (several labs can coexist)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "up":
            p.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
            p.add_argument(
                "--base-address",
                default=lab.DEFAULT_BASE_ADDRESS,
                help="first loopback address to publish sshd on (default 127.0.0.11)",
            )
    lab_parser.set_defaults(func=cmd_lab)

    def with_common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--inventory", help="inventory config (default: $JEXIDA_INVENTORY or the repo's inventory/)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    run = with_common(sub.add_parser("run", help="run a command on the best node (or --node)"))
    run.add_argument("cmd", help="the shell command")
    run.add_argument("--node", help="run on this node instead of routing")
    run.add_argument("--tags", help="required tags, comma-separated")
    run.add_argument("--os", help="required OS (linux, darwin)")
    run.add_argument("--arch", help="required architecture (x86_64, aarch64)")
    run.add_argument("--timeout", type=int, default=300, help="seconds before the command is killed on the node")
    run.set_defaults(func=cmd_run)

    broadcast = with_common(sub.add_parser("broadcast", help="run on every node matching a host pattern"))
    broadcast.add_argument("pattern", help="Ansible host pattern, e.g. 'tag_gpu:&available'")
    broadcast.add_argument("cmd", help="the shell command")
    broadcast.add_argument("--timeout", type=int, default=300)
    broadcast.set_defaults(func=cmd_broadcast)

    status = with_common(sub.add_parser("status", help="every node with fresh facts"))
    status.set_defaults(func=cmd_status)

    nodes = sub.add_parser("nodes", help="the node registry")
    nodes_sub = nodes.add_subparsers(dest="nodes_command", required=True)
    listing = with_common(nodes_sub.add_parser("list", help="list nodes"))
    listing.add_argument("--all", action="store_true", help="include inactive nodes")
    listing.add_argument("--tag", help="only nodes with this tag")
    with_common(nodes_sub.add_parser("show", help="one node")).add_argument("name")
    check = with_common(nodes_sub.add_parser("check", help="probe a node now"))
    check.add_argument("name")
    check.add_argument("--detailed", action="store_true", help="also python, disk, memory, job dirs")
    add = with_common(nodes_sub.add_parser("add", help="add or update a node in the registry"))
    add.add_argument("name")
    add.add_argument("host")
    add.add_argument("--user", default="jexida")
    add.add_argument("--port", type=int, default=22)
    add.add_argument("--tags", help="comma-separated")
    add.add_argument("--inactive", action="store_true")
    with_common(nodes_sub.add_parser("remove", help="remove a node from the registry")).add_argument("name")
    nodes.set_defaults(func=cmd_nodes)

    provision = with_common(sub.add_parser("provision", help="run playbooks/bootstrap.yml for a registered node"))
    provision.add_argument("name")
    provision.add_argument("--apply", action="store_true", help="change the node (default: check mode)")
    provision.set_defaults(func=cmd_provision)

    submit = with_common(sub.add_parser("submit", help="start a tracked job that outlives this command"))
    submit.add_argument("cmd", help="the shell command")
    submit.add_argument("--node", help="run on this node instead of routing")
    submit.add_argument("--tags", help="required tags, comma-separated")
    submit.add_argument("--os")
    submit.add_argument("--arch")
    submit.add_argument("--description", default="")
    submit.add_argument("--timeout", type=int, default=3600, help="seconds before the job is killed")
    submit.add_argument("--wait", type=float, default=10, help="seconds to wait for it to finish (default 10)")
    submit.set_defaults(func=cmd_submit)

    jobs = sub.add_parser("jobs", help="tracked jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    jobs_list = with_common(jobs_sub.add_parser("list", help="recent jobs"))
    jobs_list.add_argument("--node")
    jobs_list.add_argument("--status")
    jobs_list.add_argument("--limit", type=int, default=20)
    with_common(jobs_sub.add_parser("show", help="one job (its result when finished)")).add_argument("job_id")
    jobs_wait = with_common(jobs_sub.add_parser("wait", help="wait for a job to finish"))
    jobs_wait.add_argument("job_id")
    jobs_wait.add_argument("--timeout", type=float, default=600, help="seconds to wait at most")
    jobs_output = with_common(jobs_sub.add_parser("output", help="a job's output, paged or its last lines"))
    jobs_output.add_argument("job_id")
    jobs_output.add_argument("--stream", default="stdout", choices=["stdout", "stderr"])
    jobs_output.add_argument("--offset", type=int, default=0)
    jobs_output.add_argument("--limit", type=int, default=65536)
    jobs_output.add_argument("--tail", type=int, help="the last N lines instead")
    with_common(jobs_sub.add_parser("cancel", help="stop a job's processes on its node")).add_argument("job_id")
    jobs.set_defaults(func=cmd_jobs)

    audit_parser = sub.add_parser("audit", help="the hash-chained audit log")
    audit_sub = audit_parser.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check that no line was edited or deleted")
    verify.add_argument("--path", help="audit log (default: $JEXIDA_HOME/audit.jsonl)")
    verify.add_argument("--json", action="store_true")
    audit_parser.set_defaults(func=cmd_audit)

    serve = sub.add_parser("serve", help="the MCP server (stdio, or streamable HTTP with --http)")
    serve.add_argument("--inventory", help="inventory config (default: $JEXIDA_INVENTORY or the repo's inventory/)")
    serve.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (lab.LabError, BridgeError, NodeError, JobError) as exc:
        print(f"jexida: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
