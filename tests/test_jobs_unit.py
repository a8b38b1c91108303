"""Job bookkeeping that needs no node: the execution layer is faked, the SQLite store is real."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mcp_bridge import execution, jobs
from mcp_bridge.settings import Settings


class FakeCluster:
    """Just what JobManager uses of the core: config.home, the node directory, the audit."""

    def __init__(self, home: Path) -> None:
        self.config = SimpleNamespace(home=home, settings=Settings(output_cap=1024, job_lost_after_s=0.3))
        self.node = SimpleNamespace(name="n1", job_dir="/opt/jexida-jobs", log_dir="/var/log/jexida-jobs")
        self.directory = SimpleNamespace(get=lambda name: self.node)
        self.audited: list[tuple[str, dict[str, Any]]] = []

    def _audit(self, action: str, **fields: Any) -> None:
        self.audited.append((action, fields))


def outcome(status: str, stdout: str = "") -> execution.RunOutcome:
    host = execution.HostResult(host="n1", status=status, rc=0 if status == "succeeded" else None, stdout=stdout,  # type: ignore[arg-type]
                                msg="ssh: connect to host 127.0.0.99 port 22: Connection refused")
    return execution.RunOutcome(hosts={"n1": host}, runner_status="successful", runner_rc=0, duration_ms=1,
                                artifact_dir="")


@pytest.fixture
def manager(tmp_path: Path) -> jobs.JobManager:
    manager = jobs.JobManager(FakeCluster(tmp_path))  # type: ignore[arg-type]
    manager.store.insert(job_id="j-20261121-000000-aaaaaa", node="n1", command="sleep 60", status="running",
                         created_at="2026-11-21T00:00:00Z", timeout_s=3600)
    return manager


JOB = "j-20261121-000000-aaaaaa"


def test_a_short_blip_does_not_lose_the_job(manager: jobs.JobManager, monkeypatch: pytest.MonkeyPatch) -> None:
    replies = iter([outcome("unreachable"), outcome("succeeded", f'{{"id":"{JOB}","state":"running","rc":null,'
                                                                  '"pid":42,"stdout_bytes":3,"stderr_bytes":0}')])
    monkeypatch.setattr(manager, "_shell", lambda node, script: next(replies))
    assert manager.refresh([JOB])[0].status == "running"
    assert manager.refresh([JOB])[0].status == "running"
    assert "n1" not in manager._unreachable_since  # the node answered again: the clock restarts


def test_a_node_that_stays_unreachable_loses_its_jobs(manager: jobs.JobManager,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager, "_shell", lambda node, script: outcome("unreachable"))
    assert manager.refresh([JOB])[0].status == "running"
    time.sleep(0.35)
    lost = manager.refresh([JOB])[0]
    assert lost.status == "lost"
    assert lost.error is not None and "node n1 unreachable for 0s" in lost.error and "Connection refused" in lost.error
    assert ("job-lost", {"job_id": JOB, "nodes": ["n1"], "reason": lost.error}) in manager.cluster.audited  # type: ignore[attr-defined]


@pytest.mark.parametrize("job_id", ["", "../../etc/passwd", "j-2026-1-a", "j-20261121-000000-AAAAAA; rm"])
def test_bad_job_ids_are_refused(manager: jobs.JobManager, job_id: str) -> None:
    with pytest.raises(jobs.JobError, match="bad job id"):
        manager.get(job_id)


def test_one_collector_per_job_and_a_dead_collectors_claim_expires(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_bridge import settings
    from mcp_bridge.jobs.store import JobStore

    store = JobStore(tmp_path / "jobs.db")
    store.insert(job_id="job-1", node="n", command="true", status="running", created_at="2026-11-24T00:00:00Z",
                 timeout_s=60)
    assert store.claim_collection("job-1") is True
    assert store.claim_collection("job-1") is False, "a second collector while the first works"
    later = time.time() + settings.COLLECT_CLAIM_S + 1
    monkeypatch.setattr(time, "time", lambda: later)
    assert store.claim_collection("job-1") is True, "the first collector died with its claim: take it over"
