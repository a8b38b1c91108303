"""`jexida run | broadcast | status | nodes | provision`: commands and the node registry."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from mcp_bridge import settings
from mcp_bridge.call import Call
from mcp_bridge.cli.output import NODE_HEADERS, node_rows, print_json, print_table, show_result
from mcp_bridge.core import Cluster
from mcp_bridge.gate import NOBODY, Approval

ClusterFactory = Callable[[argparse.Namespace], Cluster]


def tags(value: str | None) -> list[str]:
    return [t.strip() for t in (value or "").split(",") if t.strip()]


def ask(cluster: Cluster, command: str, where: str, yes: bool) -> Approval:
    """The CLI's way to get a person's yes for a command the policy is unsure of."""
    unsure = cluster.unsure([command])
    if not unsure:
        return NOBODY
    if yes:
        return Approval("accepted", "--yes")
    if not sys.stdin.isatty():
        return Approval.nobody("no terminal to ask at; pass --yes to accept")
    _, decision = unsure[0]
    print(f"jexida: the policy wants a yes for this command (rule {decision.rule}): {decision.reason}", file=sys.stderr)
    print(f"  command: {command}\n  where:   {where}", file=sys.stderr)
    try:
        answer = input("Run it? [y/N] ")
    except EOFError:
        return Approval("canceled", "terminal prompt")
    accepted = answer.strip().lower() in ("y", "yes")
    return Approval("accepted" if accepted else "declined", "terminal prompt")


T = TypeVar("T")


def interruptible(work: Callable[[], T], call: Call) -> T:
    """Run a core call in a worker thread; Ctrl-C stops its commands on the nodes, then waits for the result."""
    done: list[T] = []
    failed: list[BaseException] = []

    def target() -> None:
        try:
            done.append(work())
        except BaseException as exc:  # handed to the main thread below
            failed.append(exc)

    worker = threading.Thread(target=target, name="jexida-cli-call", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        print("\njexida: interrupted: stopping the command on the node ...", file=sys.stderr)
        call.cancel()
        worker.join()
    if failed:
        raise failed[0]
    return done[0]


def cmd_run(args: argparse.Namespace, cluster_of: ClusterFactory) -> int:
    if args.node:
        # A named node needs no live facts: list the registry without probing every node.
        os.environ.setdefault("JEXIDA_INVENTORY_PROBE", "false")
    cluster = cluster_of(args)
    if args.node:
        call = Call(approval=ask(cluster, args.cmd, f"node {args.node}", args.yes))
        result = interruptible(lambda: cluster.offload(args.cmd, args.node, args.timeout, call), call)
    else:
        call = Call(approval=ask(cluster, args.cmd, "the least loaded capable node", args.yes))
        result = interruptible(lambda: cluster.run(args.cmd, args.os, args.arch, tags(args.tags), args.timeout,
                                                   call), call)
    return show_result(result, args.json)


def cmd_broadcast(args: argparse.Namespace, cluster_of: ClusterFactory) -> int:
    cluster = cluster_of(args)
    call = Call(approval=ask(cluster, args.cmd, f"every node matching {args.pattern}", args.yes))
    outcome = interruptible(lambda: cluster.broadcast(args.cmd, args.pattern, args.timeout, call), call)
    if args.json:
        print_json(outcome.model_dump())
    else:
        for result in outcome.results:
            show_result(result, False, header=True)
        print(f"jexida: {outcome.succeeded} succeeded, {outcome.failed} failed on {len(outcome.matched)} node(s)",
              file=sys.stderr)
    return 0 if outcome.failed == 0 else 1


def cmd_status(args: argparse.Namespace, cluster_of: ClusterFactory) -> int:
    status = cluster_of(args).status(fresh=True)
    if args.json:
        print_json(status.model_dump())
        return 0
    print_table(NODE_HEADERS, node_rows(status.nodes))
    print(f"\n{status.total} node(s): {status.available} available, {status.overloaded} overloaded, "
          f"{status.unreachable} unreachable, {status.inactive} inactive; {status.jobs_in_flight} in flight")
    return 0


def cmd_nodes(args: argparse.Namespace, cluster_of: ClusterFactory) -> int:
    cluster = cluster_of(args)
    if args.nodes_command == "list":
        nodes = cluster.list_nodes(active_only=not args.all, tag=args.tag)
        if args.json:
            print_json([n.model_dump() for n in nodes])
        else:
            print_table(NODE_HEADERS, node_rows(nodes))
        return 0
    if args.nodes_command == "show":
        print_json(cluster.get_node(args.name).model_dump())
        return 0
    if args.nodes_command == "check":
        check = cluster.check_node(args.name, detailed=args.detailed)
        if args.json:
            print_json(check.model_dump())
        else:
            state = "reachable" if check.reachable else f"UNREACHABLE: {check.error}"
            print(f"{check.name}: {state}, {check.latency_ms} ms")
            if args.detailed and check.reachable:
                print(f"  python {check.python_version}, disk free {check.disk_free_mb} MB, memory "
                      f"{check.mem_available_mb}/{check.mem_total_mb} MB available, job dirs "
                      f"{'writable' if check.job_dirs_writable else 'NOT writable: ' + check.detail}")
        return 0 if check.reachable and check.job_dirs_writable is not False else 1
    if args.nodes_command == "add":
        registered = cluster.register_node(args.name, args.host, args.user, args.port, tags(args.tags),
                                           not args.inactive, via=args.via,
                                           execution_node=args.execution_node)
        if args.json:
            print_json(registered.model_dump())
        else:
            verb = "added" if registered.created else ("updated" if registered.changed else "unchanged")
            print(f"{registered.name}: {verb} in {registered.registry}")
        return 0
    if args.nodes_command == "remove":
        cluster.remove_node(args.name)
        print(f"{args.name}: removed from {cluster.registry_path()}")
        return 0
    raise AssertionError(args.nodes_command)


def cmd_provision(args: argparse.Namespace, cluster_of: ClusterFactory) -> int:
    result = cluster_of(args).provision(args.name, dry_run=not args.apply)
    if args.json:
        print_json(result.model_dump())
    else:
        for task in result.tasks:
            print(f"{task.status:<12} {task.task}" + (f": {task.message}" if task.status == "failed" else ""))
        print(f"{result.name}: {'ok' if result.ok else 'FAILED'} ({'dry run' if result.dry_run else 'applied'}) "
              f"{result.message}")
    return 0 if result.ok else 1


def register(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
             ) -> None:
    run = common(sub.add_parser("run", help="run a command on the best node (or --node)"))
    run.add_argument("cmd", help="the shell command")
    run.add_argument("--node", help="run on this node instead of routing")
    run.add_argument("--tags", help="required tags, comma-separated")
    run.add_argument("--os", help="required OS (linux, darwin)")
    run.add_argument("--arch", help="required architecture (x86_64, aarch64)")
    run.add_argument("--timeout", type=int, default=settings.COMMAND_TIMEOUT_S,
                     help="seconds before the command is killed on the node")
    run.add_argument("--yes", action="store_true", help="accept a command the policy wants a person's yes for")
    run.set_defaults(func=cmd_run)

    broadcast = common(sub.add_parser("broadcast", help="run on every node matching a host pattern"))
    broadcast.add_argument("pattern", help="Ansible host pattern, e.g. 'tag_gpu:&available'")
    broadcast.add_argument("cmd", help="the shell command")
    broadcast.add_argument("--timeout", type=int, default=settings.COMMAND_TIMEOUT_S)
    broadcast.add_argument("--yes", action="store_true", help="accept a command the policy wants a person's yes for")
    broadcast.set_defaults(func=cmd_broadcast)

    common(sub.add_parser("status", help="every node with fresh facts")).set_defaults(func=cmd_status)

    nodes = sub.add_parser("nodes", help="the node registry")
    nodes_sub = nodes.add_subparsers(dest="nodes_command", required=True)
    listing = common(nodes_sub.add_parser("list", help="list nodes"))
    listing.add_argument("--all", action="store_true", help="include inactive nodes")
    listing.add_argument("--tag", help="only nodes with this tag")
    common(nodes_sub.add_parser("show", help="one node")).add_argument("name")
    check = common(nodes_sub.add_parser("check", help="probe a node now"))
    check.add_argument("name")
    check.add_argument("--detailed", action="store_true", help="also python, disk, memory, job dirs")
    add = common(nodes_sub.add_parser("add", help="add or update a node in the registry"))
    add.add_argument("name")
    add.add_argument("host")
    add.add_argument("--user", default="jexida")
    add.add_argument("--port", type=int, default=22)
    add.add_argument("--tags", help="comma-separated")
    add.add_argument("--inactive", action="store_true")
    add.add_argument("--via", metavar="NODE", help="reach it through this node, a bastion ('' removes it)")
    add.add_argument("--execution-node", metavar="NODE",
                     help="run its commands on this node with ansible-runner worker ('' removes it)")
    common(nodes_sub.add_parser("remove", help="remove a node from the registry")).add_argument("name")
    nodes.set_defaults(func=cmd_nodes)

    provision = common(sub.add_parser("provision", help="bootstrap a registered node (jexida.cluster.bootstrap)"))
    provision.add_argument("name")
    provision.add_argument("--apply", action="store_true", help="change the node (default: check mode)")
    provision.set_defaults(func=cmd_provision)
