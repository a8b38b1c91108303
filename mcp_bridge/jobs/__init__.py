"""Tracked jobs: records (store), node-side snippets (scripts), and the manager every face uses."""

from __future__ import annotations

from mcp_bridge.jobs.manager import JobManager
from mcp_bridge.jobs.models import FINISHED, CancelResult, JobError, JobInfo, JobOutput, JobResult, JobStatus

__all__ = ["FINISHED", "CancelResult", "JobError", "JobInfo", "JobManager", "JobOutput", "JobResult", "JobStatus"]
