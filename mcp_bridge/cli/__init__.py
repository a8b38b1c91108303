"""The `jexida` command: a thin face over the same core the MCP server and the HTTP API use.

Every user error (JexidaError) is caught once, here, and printed as one line that says what
was wrong and what to do; the exit code is 3. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mcp_bridge import __version__
from mcp_bridge.cli import admin, cluster, jobs
from mcp_bridge.cli.output import EXIT_ERROR, EXIT_INTERRUPTED
from mcp_bridge.errors import JexidaError


def _cluster(args: argparse.Namespace):  # type: ignore[no-untyped-def]  # the core is imported only when needed
    from mcp_bridge.core import BridgeConfig, Cluster

    return Cluster(BridgeConfig.from_env(args.inventory, face="cli"))


def _with_common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--inventory", help="inventory config (default: $JEXIDA_INVENTORY, else `jexida init`'s)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jexida", description="Run commands on a fleet of worker machines.")
    parser.add_argument("--version", action="version", version=f"jexida {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    admin.register(sub, _with_common)
    cluster.register(sub, _with_common)
    jobs.register(sub, _with_common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, _cluster))
    except JexidaError as exc:
        print(f"jexida: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
