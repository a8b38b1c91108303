"""The `jexida` command: a thin face over the same core the MCP server uses."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from mcp_bridge import lab

# Exit codes for outcomes that are not the remote command's own rc.
EXIT_USAGE = 2
EXIT_ERROR = 3


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except lab.LabError as exc:
        print(f"jexida: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
