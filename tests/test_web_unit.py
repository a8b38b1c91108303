"""The dashboard's and the HTTP API's own logic, without nodes or a browser: sessions and CSRF,
which paths are pages, the OpenAPI document, and the API's answers in-process (the app behind
the same Guard `jexida serve --http` uses; the inventory does not exist, so nothing runs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_types import Tool
from starlette.testclient import TestClient

from mcp_bridge import settings
from mcp_bridge.core import BridgeConfig, Cluster
from mcp_bridge.server import build_server, web_parts
from mcp_bridge.server.http import http_app
from mcp_bridge.web import is_page, openapi
from mcp_bridge.web.live import event
from mcp_bridge.web.pages import audit_rows, tail_lines
from mcp_bridge.web.session import Sessions, cookie_name, safe_next

TOKEN = "unit-test-token-123"
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
JOB = "j-20260101-000000-abcdef"


# --- sessions and CSRF ------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_login_needs_the_token_and_the_session_id_is_not_the_token() -> None:
    sessions = Sessions(TOKEN)
    assert sessions.login("wrong") is None
    assert sessions.login("") is None
    assert sessions.login(None) is None
    session = sessions.login(TOKEN)
    assert session is not None
    assert TOKEN not in session.id and TOKEN not in session.csrf and session.id != session.csrf
    assert sessions.get(session.id) is session
    assert sessions.get("made-up") is None and sessions.get(None) is None
    other = sessions.login(TOKEN)
    assert other is not None and other.id != session.id and other.csrf != session.csrf


def test_sessions_expire_and_log_out() -> None:
    clock = Clock()
    sessions = Sessions(TOKEN, max_age_s=60, clock=clock)
    session = sessions.login(TOKEN)
    assert session is not None
    clock.now += 59
    assert sessions.get(session.id) is session
    clock.now += 2
    assert sessions.get(session.id) is None, "an expired session still let the browser in"
    again = sessions.login(TOKEN)
    assert again is not None
    sessions.logout(again.id)
    assert sessions.get(again.id) is None


def test_sessions_are_bounded_oldest_first() -> None:
    sessions = Sessions(TOKEN, max_sessions=3)
    made = [sessions.login(TOKEN) for _ in range(5)]
    assert len(sessions) == 3
    assert [sessions.get(s.id) is not None for s in made if s] == [False, False, True, True, True]


def test_csrf_token_must_be_the_sessions_own() -> None:
    sessions = Sessions(TOKEN)
    one, two = sessions.login(TOKEN), sessions.login(TOKEN)
    assert one is not None and two is not None
    assert sessions.csrf_ok(one, one.csrf)
    assert not sessions.csrf_ok(one, two.csrf)
    assert not sessions.csrf_ok(one, "")
    assert not sessions.csrf_ok(one, None)
    assert not sessions.csrf_ok(one, one.csrf[:-1])


@pytest.mark.parametrize(("target", "expected"), [
    ("/jobs?status=running", "/jobs?status=running"), ("/", "/"), (None, "/"), ("", "/"),
    ("//evil.example/x", "/"), ("https://evil.example", "/"), ("/\\evil.example", "/"), ("jobs", "/"),
])
def test_redirects_stay_on_this_server(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_cookie_name_is_per_port() -> None:
    assert cookie_name(8765) != cookie_name(8766)


@pytest.mark.parametrize(("path", "page"), [
    ("/", True), ("/login", True), ("/logout", True), ("/jobs", True), ("/audit", True), ("/static/app.css", True),
    ("/nodes/n1", True), ("/nodes/n1/check", True), (f"/jobs/{JOB}", True), (f"/jobs/{JOB}/events", True),
    ("/mcp", False), ("/mcp/", False), ("/api/tools/cluster_bash", False), ("/api/openapi.json", False),
    ("/api", False), ("/nodes", False), ("/anything-else", False), ("/loginx", False),
])
def test_only_page_paths_skip_the_bearer_token(path: str, page: bool) -> None:
    assert is_page(path) is page


# --- the OpenAPI document ---------------------------------------------------------------------

def _cluster(home: Path, policy: Path | None = None) -> Cluster:
    return Cluster(BridgeConfig(inventory=str(home / "missing.jexida.yml"), home=home, policy_file=policy))


def _resolve(node: Any, root: dict[str, Any], local: dict[str, Any] | None = None) -> Any:
    """Inline every $ref (document refs and a schema's own #/$defs refs), to compare schemas by meaning."""
    if isinstance(node, dict):
        if "$ref" in node:
            ref = node["$ref"]
            if ref.startswith("#/$defs/"):
                assert local is not None, f"{ref} outside a schema with $defs"
                target = local["$defs"][ref.removeprefix("#/$defs/")]
            else:
                target = root
                for part in ref.removeprefix("#/").split("/"):
                    target = target[part]  # KeyError: a dangling ref
            return _resolve(target, root, local)
        return {k: _resolve(v, root, local) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_resolve(item, root, local) for item in node]
    return node


def test_openapi_has_one_path_per_tool_with_its_schemas(tmp_path: Path) -> None:
    server = build_server(_cluster(tmp_path))
    tools = anyio.run(server.list_tools)
    doc = json.loads(json.dumps(openapi.document(tools)))  # it must be plain JSON
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {f"/api/tools/{t.name}" for t in tools}
    assert len(tools) >= 15
    for tool in tools:
        operation = doc["paths"][f"/api/tools/{tool.name}"]["post"]
        assert operation["operationId"] == tool.name
        request = operation["requestBody"]["content"]["application/json"]["schema"]
        response = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert _resolve(request, doc) == _resolve(tool.input_schema, doc, tool.input_schema)
        assert tool.output_schema is not None
        assert _resolve(response, doc) == _resolve(tool.output_schema, doc, tool.output_schema)
        assert operation["requestBody"]["required"] == bool(tool.input_schema.get("required"))
        assert {"401", "422"} <= set(operation["responses"])
    # No schema keeps a ref into its own $defs (in OpenAPI that would point at the document's root).
    assert "#/$defs/" not in json.dumps(doc)
    assert "CommandResult" in doc["components"]["schemas"]  # shared by parallel_execute and cluster_broadcast
    assert doc["security"] == [{"bearer": []}]


def test_openapi_keeps_different_models_with_one_name_apart() -> None:
    def tool(name: str, kind: str) -> Tool:
        return Tool(name=name, input_schema={"type": "object", "properties": {}},
                    output_schema={"type": "object", "properties": {"x": {"$ref": "#/$defs/Thing"}},
                                   "$defs": {"Thing": {"type": kind}}})

    doc = openapi.document([tool("a", "string"), tool("b", "integer"), tool("c", "string")])
    schemas = doc["components"]["schemas"]
    assert schemas["Thing"] == {"type": "string"} and schemas["b_Thing"] == {"type": "integer"}
    out = {name: doc["paths"][f"/api/tools/{name}"]["post"]["responses"]["200"]["content"]["application/json"]
           ["schema"]["properties"]["x"]["$ref"] for name in "abc"}
    assert out == {"a": "#/components/schemas/Thing", "b": "#/components/schemas/b_Thing",
                   "c": "#/components/schemas/Thing"}


# --- the app in-process -----------------------------------------------------------------------

@dataclass
class App:
    client: TestClient
    cluster: Cluster


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setattr(settings, "LOGIN_FAILURE_DELAY_S", 0.0)
    policy = tmp_path / "policy.yml"
    policy.write_text("deny:\n  - id: no-forbidden-echo\n    reason: a test rule\n    regex: '^echo forbidden'\n")
    cluster = _cluster(tmp_path, policy)
    server = build_server(cluster)
    guarded = http_app(server, TOKEN, "127.0.0.1", PORT, {"127.0.0.1", "localhost"},
                       *web_parts(cluster, server, TOKEN))
    with TestClient(guarded, base_url=BASE, follow_redirects=False) as client:
        yield App(client, cluster)


def _api(app: App, tool: str, body: Any, token: str | None = TOKEN) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return app.client.post(f"/api/tools/{tool}", json=body, headers=headers)


def _audit(app: App) -> list[dict[str, Any]]:
    path = app.cluster.audit.path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _login(app: App) -> str:
    response = app.client.post("/login", data={"token": TOKEN, "next": "/jobs"})
    assert response.status_code == 303 and response.headers["location"] == "/jobs"
    return app.client.cookies[cookie_name(PORT)]


def test_api_needs_the_bearer_token(app: App) -> None:
    assert _api(app, "cluster_status", {}, token=None).status_code == 401
    assert _api(app, "cluster_status", {}, token="wrong").status_code == 401
    assert app.client.get("/api/openapi.json").status_code == 401
    _login(app)  # a browser's session does not open the API
    assert _api(app, "cluster_status", {}, token=None).status_code == 401
    described = app.client.get("/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert described.status_code == 200 and "/api/tools/check_worker_node" in described.json()["paths"]


def test_api_answers_like_the_tools(app: App) -> None:
    unknown = _api(app, "no_such_tool", {})
    assert unknown.status_code == 404 and "no_such_tool" in unknown.json()["error"]
    bad = _api(app, "check_worker_node", {"name": ""})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["name"] and "at least 1 character" in bad.json()["error"]
    missing = _api(app, "offload_to", {"node_id": "n1"})
    assert missing.status_code == 422 and ["command"] in [d["loc"] for d in missing.json()["detail"]]
    assert _api(app, "cluster_status", [1, 2]).status_code == 400
    not_json = app.client.post("/api/tools/cluster_status", content=b"{nope",
                               headers={"Authorization": f"Bearer {TOKEN}"})
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    # A user error from the core, word for word (here: the inventory config does not exist).
    broken = _api(app, "get_worker_node", {"name": "n1"})
    assert broken.status_code == 400 and "missing.jexida.yml does not exist" in broken.json()["error"]
    job = _api(app, "get_job", {"job_id": JOB})
    assert job.status_code == 404 and job.json()["error"].startswith(f"unknown job '{JOB}'")


def test_api_calls_are_audited_as_http_api_and_rejections_are_403(app: App) -> None:
    rejected = _api(app, "cluster_bash", {"command": "echo forbidden"})
    assert rejected.status_code == 403
    body = rejected.json()
    assert "no-forbidden-echo" in body["error"] and body["result"]["status"] == "rejected"
    entries = [e for e in _audit(app) if e.get("command") == "echo forbidden"]
    assert [e["face"] for e in entries] == ["http-api"]


def test_api_applies_the_fallback_when_the_policy_wants_a_person(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    # The built-in policy never asks today; a stand-in that always does shows the path the HTTP API takes.
    @dataclass
    class Unsure:
        decision: str = "confirm"
        rule: str = "ask-first"
        reason: str = "a person should say yes"
        allowed: bool = False

    class AlwaysAsk:
        on_unsure = "deny"

        def check(self, command: str) -> Unsure:
            return Unsure()

    monkeypatch.setattr(Cluster, "policy", property(lambda self: AlwaysAsk()))
    result = _api(app, "cluster_bash", {"command": "echo hello"})
    assert result.status_code == 403
    assert "no person to ask (HTTP API)" in result.json()["error"]
    assert "on_unsure: deny" in result.json()["error"]
    assert [e["face"] for e in _audit(app) if e.get("command") == "echo hello"] == ["http-api"]


def test_pages_need_a_login(app: App) -> None:
    for path in ("/", "/jobs", "/audit", "/nodes/n1", f"/jobs/{JOB}"):
        response = app.client.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
    assert app.client.get("/jobs?status=running").headers["location"] == "/login?next=/jobs?status=running"
    login = app.client.get("/login")
    assert login.status_code == 200 and 'name="token"' in login.text
    assert "script-src 'self'" in login.headers["content-security-policy"]
    assert app.client.get("/static/app.css").status_code == 200
    events = app.client.get(f"/jobs/{JOB}/events", headers={"Accept": "text/event-stream"})
    assert events.status_code == 401


def test_login_sets_a_strict_httponly_cookie_and_refuses_a_wrong_token(app: App) -> None:
    wrong = app.client.post("/login", data={"token": "wrong", "next": "/"})
    assert wrong.status_code == 401 and "Wrong token" in wrong.text
    assert cookie_name(PORT) not in app.client.cookies
    right = app.client.post("/login", data={"token": TOKEN, "next": "//evil.example"})
    assert right.status_code == 303 and right.headers["location"] == "/"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/" in cookie
    assert TOKEN not in cookie
    assert app.client.get("/audit").status_code == 200


def test_forms_need_the_sessions_csrf_token(app: App) -> None:
    _login(app)
    page = app.client.get("/audit")
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert len(csrf) > 20
    for data in ({}, {"csrf": "forged"}):
        refused = app.client.post(f"/jobs/{JOB}/cancel", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
        assert app.client.post("/nodes/n1/check", data=data, headers={"Accept": "application/json"}).status_code == 403
        assert app.client.post("/logout", data=data).status_code == 403
    assert not [e for e in _audit(app) if e.get("action") in ("cancel", "check")], "a refused form ran a tool"
    # With the token the form goes through to the tool (this job does not exist: its message comes back).
    done = app.client.post(f"/jobs/{JOB}/cancel", data={"csrf": csrf})
    assert done.status_code == 303 and done.headers["location"] == f"/jobs/{JOB}"
    shown = app.client.get(f"/jobs/{JOB}")
    assert shown.status_code == 404 and f"unknown job &#39;{JOB}&#39;" in shown.text
    assert app.client.post("/logout", data={"csrf": csrf}).status_code == 303
    assert app.client.get("/audit").status_code == 303, "the session outlived its logout"


def test_audit_page_shows_faces_and_the_verification(app: App) -> None:
    _api(app, "cluster_bash", {"command": "echo forbidden"})
    _login(app)
    page = app.client.get("/audit")
    assert page.status_code == 200
    assert 'id="verify"' in page.text and "Verified: 1 line(s)" in page.text
    assert 'class="face">http-api</td>' in page.text and "echo forbidden" in page.text


def test_a_broken_inventory_is_an_error_page_not_a_crash(app: App) -> None:
    _login(app)
    page = app.client.get("/")
    assert page.status_code == 400 and "missing.jexida.yml does not exist" in page.text


# --- small pieces the pages stand on ------------------------------------------------------------

def test_tail_lines_reads_across_blocks(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    assert tail_lines(log, 5) == []
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert tail_lines(log, 3, block=7) == ["line 997", "line 998", "line 999"]
    assert tail_lines(log, 2000, block=100) == [f"line {i}" for i in range(1000)]


def test_audit_rows_are_newest_first_and_survive_a_bad_line() -> None:
    rows = audit_rows(['{"ts": "t1", "face": "cli", "action": "command", "rc": 0, "mac": "m", "prev": "p"}',
                       "not json", '{"ts": "t2", "face": "http-api", "action": "check", "nodes": ["n1"]}'])
    assert [r["ts"] for r in rows] == ["t2", None, "t1"]
    assert rows[1]["raw"] == "not json" and rows[0]["raw"] is None
    assert rows[2]["rest"] == "rc=0", "the chain's own fields are not details"


def test_server_sent_events_carry_the_offset_to_resume_from() -> None:
    text = event("output", {"data": "a\nb\n", "offset": 4}, 4)
    assert text == 'id: 4\nevent: output\ndata: {"data": "a\\nb\\n", "offset": 4}\n\n'
    assert event("end", {}) == "event: end\ndata: {}\n\n"


def test_an_unknown_job_or_node_is_404_by_its_type_not_its_words() -> None:
    from mcp_bridge.jobs.models import JobError, UnknownJob
    from mcp_bridge.nodes import NodeError
    from mcp_bridge.web.context import error_status

    assert error_status(UnknownJob("no such thing")) == 404
    assert error_status(NodeError("gone")) == 404
    assert error_status(JobError("unknown stream 'x': use stdout or stderr")) == 400
