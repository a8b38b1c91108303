"""The dashboard and the HTTP API in a real browser (Debian's chromium, driven by Playwright),
against `jexida serve --http` over the worker lab: what a person does, and what curl does.

Set JEXIDA_SCREENSHOTS=DIR to keep the nodes and job page screenshots there (docs/ holds the
committed ones); they are always taken, into the test's own folder otherwise.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import WorkerLab, as_jexida, write_jexida_config
from mcp_client import bridge_env
from playwright.sync_api import Browser, Page, expect, sync_playwright

pytestmark = pytest.mark.integration

TOKEN = "web-test-token-7f3a9c"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags chromium's own connections are refused here and it stalls.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT_MAX_BYTES = 150 * 1024
GREEN = "rgb(26, 127, 55)"  # --ok in app.css: the colour of "available"


@dataclass
class Dashboard:
    host: str
    port: int
    url: str
    log: Path
    process: subprocess.Popen[bytes]


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def dashboard(worker_lab: WorkerLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    work = tmp_path_factory.mktemp("web")
    config = write_jexida_config(work / "lab.jexida.yml", worker_lab.registry)
    host = "127.0.0.1"
    port = _free_port(host)
    log = work / "serve.log"
    with open(log, "wb") as err:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "jexida"), "serve", "--http", "--host", host, "--port", str(port),
             "--inventory", str(config)],
            env=bridge_env(JEXIDA_TOKEN=TOKEN), stdout=subprocess.DEVNULL, stderr=err,
        )
    board = Dashboard(host, port, f"http://{host}:{port}", log, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _request(board, "GET", "/login")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, f"jexida serve --http died: {log.read_text()}"
            assert time.monotonic() < deadline, f"jexida serve --http did not answer: {log.read_text()}"
            time.sleep(0.3)
        yield board
    finally:
        process.terminate()
        process.wait(timeout=20)


def _request(board: Dashboard, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One plain HTTP request, as curl would send it; the body back as JSON when it is JSON."""
    conn = http.client.HTTPConnection(board.host, board.port, timeout=120)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")


def api(board: Dashboard, tool: str, body: Any, token: str | None = TOKEN) -> tuple[int, Any]:
    return _request(board, "POST", f"/api/tools/{tool}", body,
                    {"Authorization": f"Bearer {token}"} if token else {})


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def login(page: Page, board: Dashboard, token: str = TOKEN) -> None:
    page.goto(board.url + "/")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.fill("#token", token)
    page.click("button[type=submit]")


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    """A logged-in browser tab, laptop-sized."""
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    tab = context.new_page()
    login(tab, dashboard)
    expect(tab.locator("h1")).to_have_text("Nodes")
    yield tab
    context.close()


def screenshot(page: Page, name: str, tmp_path: Path) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    assert 0 < shot.stat().st_size < SCREENSHOT_MAX_BYTES, f"{name} is {shot.stat().st_size} bytes"
    keep = os.environ.get("JEXIDA_SCREENSHOTS")
    if keep:
        shutil.copy(shot, Path(keep) / name)
    return shot


def card(page: Page, name: str) -> Any:
    return page.locator(f'article.card[data-node="{name}"]')


def running_on(worker_lab: WorkerLab, index: int, *literals: str) -> str:
    """Which processes on the node have one of ``literals`` in their command line (pids), or "none".

    The last character goes in brackets so the pattern does not match the shell that runs pgrep."""
    pattern = "|".join(re.escape(text[:-1]) + f"[{text[-1]}]" for text in literals)
    return as_jexida(worker_lab, worker_lab.nodes[index], f"pgrep -f '{pattern}' || echo none").stdout.strip()


def python_version(worker_lab: WorkerLab, index: int) -> str:
    reported = as_jexida(worker_lab, worker_lab.nodes[index], "python3 --version").stdout
    found = re.search(r"Python (\S+)", reported)
    assert found, reported
    return found.group(1)


# --- logging in ---------------------------------------------------------------------------------

def test_login_refuses_a_wrong_token_and_keeps_the_token_out_of_the_cookie(browser: Browser,
                                                                            dashboard: Dashboard) -> None:
    context = browser.new_context()
    tab = context.new_page()
    login(tab, dashboard, token="not-the-token")
    expect(tab.get_by_role("alert")).to_contain_text("Wrong token")
    expect(tab).to_have_url(re.compile(r"/login$"))
    assert context.cookies() == []
    tab.fill("#token", TOKEN)
    tab.click("button[type=submit]")
    expect(tab.locator("h1")).to_have_text("Nodes")
    [cookie] = context.cookies()
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]
    assert tab.evaluate("document.cookie") == "", "page script can read the session cookie"
    context.close()


# --- nodes ---------------------------------------------------------------------------------------

def test_nodes_page_lists_the_lab_nodes_with_health(page: Page, worker_lab: WorkerLab) -> None:
    for node in worker_lab.nodes:
        badge = card(page, node.name).locator("header .badge")
        expect(badge).to_have_text("available")
        assert badge.evaluate("b => getComputedStyle(b).backgroundColor") == GREEN
        facts = card(page, node.name).locator("dl.facts").first
        expect(facts).to_contain_text(f"{node.address}:{node.port}")
        expect(facts.locator("dt:text-is('Last probe') + dd")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\dT"))
        expect(facts.locator("dt:text-is('Load group') + dd")).not_to_have_text("-")
    page.click("a.button:text('Refresh')")
    expect(page.locator("p.summary")).to_contain_text("probed now")


def test_check_shows_reachable_and_the_python_version(page: Page, dashboard: Dashboard, worker_lab: WorkerLab,
                                                     tmp_path: Path) -> None:
    name = worker_lab.nodes[0].name
    card(page, name).locator("form.check-form button").click()
    result = card(page, name).locator(".check-result")
    expect(result.locator(".badge")).to_have_text("reachable", timeout=60_000)
    expect(result.locator(".python-version")).to_have_text(python_version(worker_lab, 0))
    expect(result.locator("dt:text-is('Job dirs writable') + dd")).to_have_text("yes")
    expect(result.locator("dt:text-is('Latency') + dd")).to_have_text(re.compile(r"^\d+ ms$"))
    # The check went through the tool and is in the audit, as the dashboard's face.
    screenshot(page, "dashboard-nodes.png", tmp_path)
    # The check went through the tool and is in the audit, as the dashboard's face.
    page.goto(dashboard.url + "/audit")
    checks = page.locator("table.audit tbody tr").filter(has=page.locator("td.face", has_text=re.compile("^web$")))
    expect(checks.filter(has_text="check").filter(has_text=name).first).to_be_visible()


def test_phone_width_has_no_sideways_scrolling(browser: Browser, dashboard: Dashboard, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    tab = context.new_page()
    login(tab, dashboard)
    for path in ("/", "/jobs", "/audit"):
        tab.goto(dashboard.url + path)
        assert tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
    tab.goto(dashboard.url + "/")
    tab.screenshot(path=str(tmp_path / "dashboard-phone.png"))  # to look at; not kept
    context.close()


def test_without_javascript_pages_read_and_check_posts_back(browser: Browser, dashboard: Dashboard,
                                                            worker_lab: WorkerLab) -> None:
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    login(tab, dashboard)
    expect(tab.locator("h1")).to_have_text("Nodes")
    name = worker_lab.nodes[1].name
    card(tab, name).locator("form.check-form button").click()  # a real form post, then a redirect
    expect(tab).to_have_url(re.compile(rf"/#node-{re.escape(name)}$"), timeout=60_000)
    expect(card(tab, name).locator(".check-result .python-version")).to_have_text(python_version(worker_lab, 1))
    tab.click(f"a[href='/nodes/{name}']")
    expect(tab.locator("h1")).to_contain_text(name)
    expect(tab.locator("table.kv")).to_contain_text("python_version")
    context.close()


# --- jobs ----------------------------------------------------------------------------------------

def test_job_output_follows_live_and_cancel_stops_it_on_the_node(page: Page, dashboard: Dashboard,
                                                                 worker_lab: WorkerLab, tmp_path: Path) -> None:
    node = worker_lab.nodes[2]
    command = "for i in $(seq 1 300); do echo web-tick-$i; sleep 0.917; done"  # a line a second, unique sleep
    status, submitted = api(dashboard, "submit_job", {"command": command, "node_name": node.name, "wait_s": 0})
    assert status == 200 and submitted["status"] == "running", submitted
    job_id = submitted["job_id"]
    page.goto(f"{dashboard.url}/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("running")
    output = page.locator("#output")
    expect(output).to_contain_text("web-tick-2", timeout=30_000)
    page.evaluate("window.__same_page = true")  # gone if the page were reloaded
    seen = output.inner_text().count("web-tick-")
    expect(output).to_contain_text(f"web-tick-{seen + 3}", timeout=30_000)
    assert page.evaluate("window.__same_page === true"), "the output came by reloading, not by following"
    screenshot(page, "dashboard-job.png", tmp_path)
    assert running_on(worker_lab, 2, job_id, "sleep 0.917") != "none", "the job is not running on its node"

    page.click("#cancel-form button")
    expect(page.locator("#job-status")).to_have_text("canceled", timeout=60_000)
    expect(page.locator("p.note")).to_contain_text("stopped")
    expect(page.locator("#cancel-form")).to_have_count(0)
    left = running_on(worker_lab, 2, job_id, "sleep 0.917")
    assert left == "none", f"the canceled job still runs on the node: pids {left}"
    status, job = api(dashboard, "get_job", {"job_id": job_id})
    assert status == 200 and job["status"] == "canceled"
    page.click("a:text('stdout')")
    expect(page.locator("pre.output")).to_contain_text("web-tick-1\n")


def test_jobs_page_filters_by_status_and_node(page: Page, dashboard: Dashboard, worker_lab: WorkerLab) -> None:
    node = worker_lab.nodes[1].name
    status, done = api(dashboard, "submit_job", {"command": "echo web-filter-$(hostname)", "node_name": node,
                                                 "wait_s": 30})
    assert status == 200 and done["status"] == "succeeded", done
    page.goto(dashboard.url + "/jobs")
    page.select_option("select[name=status]", "succeeded")
    page.fill("input[name=node]", node)
    page.click("form.filters button")
    expect(page).to_have_url(re.compile(r"/jobs\?status=succeeded&node="))
    rows = page.locator("table.jobs tbody tr")
    expect(rows.filter(has_text=done["job_id"])).to_have_count(1)
    for text in rows.all_inner_texts():
        assert "succeeded" in text and node in text, text
    page.select_option("select[name=status]", "canceled")
    page.click("form.filters button")
    expect(rows.filter(has_text=done["job_id"])).to_have_count(0)


def test_a_form_post_without_the_csrf_token_is_refused(page: Page, dashboard: Dashboard,
                                                       worker_lab: WorkerLab) -> None:
    name = worker_lab.nodes[0].name
    refused = page.request.post(f"{dashboard.url}/nodes/{name}/check", form={"next": "/"}, max_redirects=0)
    assert refused.status == 403 and "CSRF" in refused.text()
    forged = page.request.post(f"{dashboard.url}/logout", form={"csrf": "forged"}, max_redirects=0)
    assert forged.status == 403
    # In the page too: a Check form whose token is gone shows the refusal, and nothing ran.
    card(page, name).locator("form.check-form input[name=csrf]").evaluate("input => input.remove()")
    card(page, name).locator("form.check-form button").click()
    expect(card(page, name).locator(".check-result .problem")).to_contain_text("CSRF")
    page.reload()  # the refused posts did not end the session
    expect(page.locator("h1")).to_have_text("Nodes")


# --- the HTTP API --------------------------------------------------------------------------------

def test_api_runs_tools_with_a_token_and_says_what_is_wrong(dashboard: Dashboard, worker_lab: WorkerLab) -> None:
    node = worker_lab.nodes[0].name
    assert api(dashboard, "cluster_status", {}, token=None)[0] == 401
    assert api(dashboard, "cluster_status", {}, token="wrong")[0] == 401
    status, bad = api(dashboard, "offload_to", {"command": "", "node_id": node})
    assert status == 422 and bad["detail"][0]["loc"] == ["command"], bad
    status, unknown = api(dashboard, "get_worker_node", {"name": "no-such-node"})
    assert status == 404 and unknown["error"].startswith("unknown node 'no-such-node'"), unknown
    assert api(dashboard, "no_such_tool", {})[0] == 404
    status, ran = api(dashboard, "offload_to", {"command": "echo web-api-$(hostname)", "node_id": node})
    assert status == 200 and ran["status"] == "succeeded" and ran["stdout"].startswith("web-api-"), ran
    status, checked = api(dashboard, "check_worker_node", {"name": node, "detailed": True})
    assert status == 200 and checked["reachable"] is True and checked["python_version"]
    status, doc = _request(dashboard, "GET", "/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and "/api/tools/submit_job" in doc["paths"]


def test_audit_page_has_http_api_entries_and_verifies(page: Page, dashboard: Dashboard,
                                                       worker_lab: WorkerLab) -> None:
    marker = f"echo web-audit-{time.time_ns()}"
    status, _ = api(dashboard, "offload_to", {"command": marker, "node_id": worker_lab.nodes[0].name})
    assert status == 200
    page.goto(dashboard.url + "/audit")
    expect(page.locator("#verify")).to_contain_text("Verified")
    intent = page.locator("table.audit tbody tr").filter(has_text=marker)  # the outcome line has no command
    expect(intent).to_have_count(1)
    expect(intent.locator("td.face")).to_have_text("http-api")
    expect(intent).to_contain_text("intent")
    outcomes = page.locator("table.audit tbody tr").filter(has=page.locator("td.face", has_text="http-api")) \
        .filter(has_text="outcome")
    expect(outcomes.first).to_be_visible()
