"""Run a playbook through ansible-runner and summarise it task by task (provisioning)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import ansible_runner

from mcp_bridge.runner_env import ansible_envvars, new_private_dir


@dataclass
class TaskEvent:
    host: str
    task: str
    status: Literal["ok", "changed", "failed", "skipped", "unreachable"]
    message: str = ""


@dataclass
class PlaybookOutcome:
    tasks: list[TaskEvent]
    recap: dict[str, dict[str, int]]
    runner_status: str
    runner_rc: int | None
    duration_ms: int


def run_playbook(
    *,
    playbook: str,
    inventory: str | Mapping[str, Any],
    limit: str | None = None,
    extravars: Mapping[str, Any] | None = None,
    check: bool = False,
    timeout_s: int | None = 1800,
) -> PlaybookOutcome:
    """Run a playbook through ansible-runner and summarise it task by task."""
    private_dir = new_private_dir()
    tasks: list[TaskEvent] = []
    recap: dict[str, dict[str, int]] = {}
    statuses = {"runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped",
                "runner_on_unreachable": "unreachable", "runner_item_on_failed": "failed"}

    def on_event(event: dict[str, Any]) -> bool:
        name = event.get("event", "")
        data = event.get("event_data", {}) or {}
        if name in statuses:
            res = data.get("res", {}) or {}
            status = statuses[name]
            if status == "ok" and res.get("changed"):
                status = "changed"
            message = res.get("msg", "")
            if isinstance(message, list):
                message = "; ".join(str(m) for m in message)
            if name == "runner_on_ok" and "results" in res:  # a loop: gather the items' messages
                message = "; ".join(str(r.get("msg", "")) for r in res["results"] if r.get("msg"))
            if data.get("ignore_errors") and status == "failed":
                status = "ok"
            tasks.append(TaskEvent(host=str(data.get("host", "")), task=str(data.get("task", "")),
                                   status=status, message=str(message or "")))  # type: ignore[arg-type]
        elif name == "playbook_on_stats":
            for key in ("ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored"):
                for host, count in (data.get(key) or {}).items():
                    recap.setdefault(host, {})[key] = int(count)
        return True

    started = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(private_dir),
        ident="run",
        playbook=playbook,
        inventory=dict(inventory) if isinstance(inventory, Mapping) else inventory,
        limit=limit,
        extravars=dict(extravars or {}),
        cmdline="--check" if check else None,
        envvars=ansible_envvars(),
        timeout=timeout_s,
        quiet=True,
        event_handler=on_event,
        suppress_env_files=True,
    )
    return PlaybookOutcome(tasks=tasks, recap=recap, runner_status=str(runner.status), runner_rc=runner.rc,
                           duration_ms=int((time.monotonic() - started) * 1000))
