"""`jexida init | serve | audit | policy | lab`: set-up, the MCP server, and checks."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp_bridge import settings
from mcp_bridge.cli.output import print_json, print_table
from mcp_bridge.errors import JexidaError


def cmd_init(args: argparse.Namespace, _: Any) -> int:
    from mcp_bridge.userconfig import init_config

    report = init_config()
    if args.json:
        print_json({"created": [str(p) for p in report.created], "kept": [str(p) for p in report.kept],
                    "paths": {k: str(v) for k, v in report.paths.items()}})
        return 0
    for path in report.created:
        print(f"created  {path}")
    for path in report.kept:
        print(f"kept     {path} (exists; not changed)")
    print()
    print(report.next_steps())
    return 0


def cmd_serve(args: argparse.Namespace, _: Any) -> int:
    from mcp_bridge.server import serve

    serve(args.inventory, http=args.http, host=args.host, port=args.port, allowed_hosts=args.allowed_host)
    return 0


def cmd_audit(args: argparse.Namespace, _: Any) -> int:
    from mcp_bridge import audit
    from mcp_bridge.paths import state_dir

    path = args.path or str(state_dir() / "audit.jsonl")
    result = audit.verify(path)
    if args.json:
        print_json({"path": path, **result.__dict__})
    elif result.ok:
        print(f"{path}: ok, {result.lines} line(s), chain intact")
    else:
        print(f"{path}: BROKEN at line {result.bad_line}: {result.problem}")
    return 0 if result.ok else 1


def _commands_from_file(path: str) -> list[str]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise JexidaError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise JexidaError(f"{path} is not JSON ({exc}): give a JSON list of command strings") from exc
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise JexidaError(f"{path} must hold a JSON list of command strings, like [\"ls -la\", \"make\"]")
    return data


def cmd_policy(args: argparse.Namespace, _: Any) -> int:
    from mcp_bridge.config import resolve_policy
    from mcp_bridge.policy import CommandPolicy

    commands = list(args.commands)
    if args.file:
        commands.extend(_commands_from_file(args.file))
    if not commands:
        raise JexidaError("give the commands to check: jexida policy check 'make -j8' ... or --file FILE.json")
    policy = CommandPolicy.from_file(Path(args.policy).expanduser() if args.policy else resolve_policy())
    decisions = [d.to_dict(c) for c, d in zip(commands, policy.check_many(commands), strict=True)]
    if args.json:
        print_json(decisions)
    else:
        print_table(("DECISION", "RULE", "COMMAND", "REASON"),
                    [(d["decision"], d["rule"] or "-", d["command"], d["reason"]) for d in decisions])
    return 0


def cmd_lab(args: argparse.Namespace, _: Any) -> int:
    import jexida_lab as lab  # only `jexida lab` needs podman

    if args.lab_command == "up":
        where = {"base_address": args.base_address} if args.base_address else {}
        shown = lab.up(args.name, nodes=args.nodes, hidden=args.hidden, **where)
    elif args.lab_command == "status":
        shown = lab.status(args.name)
    else:
        removed = lab.down(args.name)
        if args.json:
            print_json({"lab": args.name, "removed": removed})
        else:
            print(f"lab {args.name}: removed {len(removed)} container(s)")
        return 0
    healthy = shown.all_up or not shown.nodes
    if args.json:
        print_json(shown.to_dict())
        return 0 if healthy else 1
    print(f"lab {shown.name}: {len(shown.nodes)} node(s), image {shown.image}")
    print(f"inventory: {shown.inventory}")
    rows = [(n.name, f"{n.address}:{n.port}" + (f" via {n.via}" if n.via else ""), n.state, "up" if n.up else "DOWN",
             n.container) for n in shown.nodes]
    if rows:
        print_table(("NODE", "SSH", "CONTAINER STATE", "HEALTH", "CONTAINER"), rows)
    return 0 if healthy else 1


def register(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
             ) -> None:
    init = sub.add_parser("init", help="create your configuration (~/.config/jexida) and controller key")
    init.add_argument("--json", action="store_true", help="machine-readable output")
    init.set_defaults(func=cmd_init)

    serve = sub.add_parser("serve", help="the MCP server (stdio, or streamable HTTP with --http)")
    serve.add_argument("--inventory", help="inventory config (default: $JEXIDA_INVENTORY, else `jexida init`'s)")
    serve.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    serve.add_argument("--host", default=settings.HTTP_HOST)
    serve.add_argument("--port", type=int, default=settings.HTTP_PORT)
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="a host name clients use to reach this server (repeatable; needed off loopback)")
    serve.set_defaults(func=cmd_serve)

    audit_parser = sub.add_parser("audit", help="the audit log")
    audit_sub = audit_parser.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check that no line was edited, added or deleted")
    verify.add_argument("--path", help="audit log (default: the state folder's audit.jsonl)")
    verify.add_argument("--json", action="store_true")
    audit_parser.set_defaults(func=cmd_audit)

    policy = sub.add_parser("policy", help="the command policy")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="what the policy decides for each command (allow, deny, confirm)")
    check.add_argument("commands", nargs="*", help="commands to check")
    check.add_argument("--file", help="a JSON list of command strings to check")
    check.add_argument("--policy", help="policy file (default: $JEXIDA_POLICY or ~/.config/jexida/policy.yml)")
    check.add_argument("--json", action="store_true", help="a JSON list of {command, decision, rule, reason}")
    policy.set_defaults(func=cmd_policy)

    lab_parser = sub.add_parser("lab", help="try a cluster on this machine: worker nodes in podman containers")
    lab_sub = lab_parser.add_subparsers(dest="lab_command", required=True)
    for name, help_text in (("up", "start (or keep) the lab's nodes"),
                            ("status", "show the lab's nodes and whether they answer SSH"),
                            ("down", "remove the lab's containers and state")):
        p = lab_sub.add_parser(name, help=help_text)
        p.add_argument("--name", default="default", help="lab name (several labs can coexist)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "up":
            p.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
            p.add_argument("--base-address", help="first loopback address to publish sshd on (default 127.0.0.11)")
            p.add_argument("--hidden", type=int, default=0,
                           help="nodes on a network only node 1 (a bastion) reaches (default 0)")
    lab_parser.set_defaults(func=cmd_lab)
    del common  # these commands take no --inventory
