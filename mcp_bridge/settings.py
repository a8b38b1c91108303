"""The one home of every default and limit the faces share (MCP tools, HTTP API, CLI).

A face never writes a number of its own: tool signatures, argparse defaults and the core
all read them from here. Settings a person may change come from environment variables
(``JEXIDA_*``), read once per bridge by :meth:`Settings.from_env`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from ansible_collections.jexida.cluster.plugins.plugin_utils import probe

from mcp_bridge.errors import JexidaError

# --- defaults of tool arguments ----------------------------------------------------------
COMMAND_TIMEOUT_S = 300  # cluster_bash, offload_to, parallel_execute, cluster_broadcast
JOB_TIMEOUT_S = 3600  # submit_job
JOB_WAIT_S = 10.0  # how long submit_job waits for a job to end before answering "running"
MAX_JOB_WAIT_S = 600.0
MAX_TIMEOUT_S = 7 * 24 * 3600
OUTPUT_PAGE_BYTES = 65536  # job_output's default page
MAX_OUTPUT_PAGE_BYTES = 1024 * 1024
JOB_LIST_LIMIT = 20
MAX_JOB_LIST_LIMIT = 1000

# --- the HTTP face ----------------------------------------------------------------------------
HTTP_HOST = "127.0.0.1"
HTTP_PORT = 8765

# --- the web dashboard (same server, same token) ------------------------------------------
SESSION_MAX_AGE_S = 12 * 3600  # a dashboard login lasts this long
MAX_SESSIONS = 200  # logins kept at once; the oldest is dropped first
LOGIN_FAILURE_DELAY_S = 1.0  # a wrong token waits this long for its answer (slows guessing)
AUDIT_PAGE_LINES = 100  # the audit page shows the latest lines
JOB_TAIL_LINES = 200  # the job page shows the end of the output, then follows it

# --- execution ----------------------------------------------------------------------------
MAX_PARALLEL_RUNS = 16  # concurrent ansible-runner processes one bridge starts
CONTROLLER_GRACE_S = 30  # beyond a command's own timeout before the controller kills Ansible
CANCEL_GRACE_S = 10  # after a cancel reached the node, before the controller stops waiting for Ansible
NODE_SNIPPET_TIMEOUT_S = 120  # job start/poll/read/cancel snippets
# A job's collection claim older than this is taken over (its collector died): the collect snippet's
# own limit, twice.
COLLECT_CLAIM_S = 2 * NODE_SNIPPET_TIMEOUT_S
RUNNER_DIRS_KEPT = 200  # per-call runner folders kept under the state folder
RUNNER_ROTATE_EVERY = 20  # runs between two clean-ups of those folders
# Ansible forks of one call: one per host, up to this many at once (each fork is a copy of Ansible;
# a 1,000-node broadcast runs in waves rather than as 1,000 processes).
MAX_FORKS = 100
# The connection names that run on the controller itself: the probe's (plugin_utils/probe.py).
LOCAL_CONNECTIONS = probe.LOCAL_CONNECTIONS


def forks_for(hosts: int) -> int:
    return max(1, min(hosts, MAX_FORKS))
# How often ansible-runner looks at a call's timeout and give-up while Ansible prints nothing
# (its own default is 5 s, so a timeout or cancel could act 5 s late).
RUNNER_POLL_S = 0.25
# Execution nodes (mcp_bridge/exec_node.py): the venv the role's jexida_worker_execution_node
# makes there (ansible-core, ansible-runner and the guard; the role's default is checked against
# this in tests), and where each streamed call's worker folder goes (removed after the call).
EXEC_NODE_VENV = "/opt/jexida-runner"
EXEC_NODE_WORK_DIR = "/tmp"
EXEC_NODE_CONNECT_TIMEOUT_S = 10  # ssh to the execution node
# The warm Ansible (mcp_bridge/warm/): on in `jexida serve` unless this variable says off.
WARM_ANSIBLE_ENV = "JEXIDA_WARM_ANSIBLE"
WARM_YOUNG_S = 60.0  # a warm server that dies sooner than this after its start "died young"
WARM_RESTART_PAUSE_S = 10.0  # after a server died young, before the next start
WARM_GIVE_UP_AFTER = 5  # servers that died young in a row: stop trying (calls stay cold)
# Which Ansible module carries the node-side script: raw (default) or shell (the way before raw,
# kept for comparison in bench/ and for nodes where raw cannot work).
NODE_MODULE_ENV = "JEXIDA_NODE_MODULE"
OFF_WORDS = frozenset({"0", "off", "false", "no"})

# --- light commands ---------------------------------------------------------------------------
# cluster_bash without requirements runs these programs on the node with a local connection (the
# controller), when the inventory has one: a read costs less there than the trip to a worker.
# Only when every program of the command (a simple command or a pipeline) is on the list and the
# command uses no other shell syntax (routing.light_programs). The default list holds programs
# that only read and print, whatever their arguments (no `env`: the controller's environment is
# the bridge's; no `date`/`hostname`/`sort`: they can change the machine or write files; no
# wrappers such as `command` or `xargs` that run other programs; no `grep`/`find`/`du`: they can
# walk a whole disk, which is heavy work for the controller). Set the inventory config's
# `light_commands:` to a list of your own, or to [] to turn light routing off.
LIGHT_COMMANDS: tuple[str, ...] = (
    "ls", "pwd", "cat", "head", "tail", "which", "echo", "printf", "wc", "whoami", "id", "uname", "basename",
    "dirname", "realpath", "readlink", "stat", "file", "cut", "tr", "true", "false", "test", "type", "nproc",
    "uptime", "free",
)


@dataclass(frozen=True)
class Settings:
    """What a person may tune, each with its environment variable and default."""

    output_cap: int = 1024 * 1024  # JEXIDA_OUTPUT_CAP: bytes per stream, head + tail kept
    facts_ttl_s: float = 15.0  # JEXIDA_FACTS_TTL: seconds before facts are refreshed in the background
    job_retention_days: float = 30.0  # JEXIDA_JOB_RETENTION_DAYS: finished job records kept this long
    job_lost_after_s: float = 30.0  # JEXIDA_JOB_LOST_AFTER: a node unreachable this long loses its jobs
    job_poll_interval_s: float = 2.0  # JEXIDA_JOB_POLL_INTERVAL: how often running jobs are polled

    @classmethod
    def from_env(cls) -> Settings:
        values: dict[str, float | int] = {}
        for spec in fields(cls):
            name = ENV_NAMES[spec.name]
            raw = os.environ.get(name)
            if raw is None or raw == "":
                continue
            kind = int if spec.type in ("int", int) else float
            try:
                value = kind(raw)
            except ValueError:
                raise JexidaError(f"{name}={raw!r} is not a number: unset it or give a {kind.__name__}") from None
            if value <= 0:
                raise JexidaError(f"{name}={raw!r} must be greater than 0")
            values[spec.name] = value
        return cls(**values)  # type: ignore[arg-type]


ENV_NAMES: dict[str, str] = {
    "output_cap": "JEXIDA_OUTPUT_CAP",
    "facts_ttl_s": "JEXIDA_FACTS_TTL",
    "job_retention_days": "JEXIDA_JOB_RETENTION_DAYS",
    "job_lost_after_s": "JEXIDA_JOB_LOST_AFTER",
    "job_poll_interval_s": "JEXIDA_JOB_POLL_INTERVAL",
}
