"""`make demo`: the main job end to end on a 3-node lab of real worker nodes."""

from __future__ import annotations

import sys

from mcp_bridge import execution, lab

DEMO_LAB = "demo"


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> int:
    step("1. lab: 3 fresh Debian 12 servers (podman containers, each sshd on its own loopback address)")
    status = lab.up(DEMO_LAB, nodes=3)
    for node in status.nodes:
        print(f"   {node.name:<14} {node.address}:{node.port}  {'up' if node.up else 'DOWN'}")

    step("2. ansible.builtin.ping on every node, through ansible-runner (admin access)")
    outcome = execution.run_module(
        inventory=status.inventory, host_pattern="all", module="ansible.builtin.ping"
    )
    print(execution.describe(outcome))
    print(f"   {len(outcome.hosts)} node(s) answered in {outcome.duration_ms} ms")
    failed = [h for h, r in outcome.hosts.items() if not r.ok]
    if failed or len(outcome.hosts) != len(status.nodes):
        print(f"demo: FAILED on {failed or 'missing hosts'}", file=sys.stderr)
        return 1
    print("\ndemo: ok. `jexida lab down --name demo` removes the lab.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
