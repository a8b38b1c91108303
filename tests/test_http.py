"""`jexida serve --http`: always a token (made and kept when none is given), Host checks with
--allowed-host, the Bearer scheme in any case, and a real MCP session over streamable HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx2 as httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from mcp_client import bridge_env

from mcp_bridge.errors import JexidaError
from mcp_bridge.server.http import allowed_names, bearer_token, http_token

MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                         "clientInfo": {"name": "pytest", "version": "1"}}}


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(inventory: Path, address: str, *extra: str, env: dict[str, str] | None = None,
            ) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port(address)
    process = subprocess.Popen([str(Path(sys.executable).parent / "jexida"), "serve", "--http", "--inventory",
                                str(inventory), "--host", address, "--port", str(port), *extra],
                               env=bridge_env(**(env or {})), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex((address, port)) == 0:
                    break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.2)
        else:
            raise AssertionError(f"jexida serve --http did not open {address}:{port} within 60 s")
        yield f"http://{address}:{port}", process
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_unit_allowed_names_and_bearer_scheme() -> None:
    assert allowed_names("127.0.0.1", []) >= {"127.0.0.1", "localhost"}
    assert allowed_names("0.0.0.0", ["build.example"]) == {"build.example"}
    with pytest.raises(JexidaError, match="--allowed-host"):
        allowed_names("0.0.0.0", [])
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert bearer_token({b"authorization": f"{scheme} abc".encode()}) == "abc"
    assert bearer_token({b"authorization": b"Basic abc"}) is None


def test_unit_a_token_is_made_once_and_kept_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JEXIDA_TOKEN", raising=False)
    first, made = http_token(tmp_path)
    again, made_again = http_token(tmp_path)
    assert made and not made_again and first == again and len(first) >= 32
    assert oct((tmp_path / "http_token").stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("JEXIDA_TOKEN", "given")
    assert http_token(tmp_path) == ("given", False)


@pytest.mark.integration
def test_loopback_needs_the_token_too(lab_config: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JEXIDA_TOKEN"}
    state = tmp_path / "state"
    with serving(lab_config, "127.0.0.1", env={"JEXIDA_HOME": str(state)} | {"PATH": env["PATH"]}) as (url, proc):
        token = (state / "http_token").read_text().strip()
        nothing = httpx.post(f"{url}/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        wrong = httpx.post(f"{url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": "Bearer nope"})
        right = httpx.post(f"{url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"bearer {token}"})
        rebinding = httpx.post(f"{url}/mcp", json=INITIALIZE,
                               headers={**MCP_HEADERS, "Authorization": f"Bearer {token}", "Host": "evil.example"})
    printed = proc.stderr.read() if proc.stderr else ""
    assert nothing.status_code == 401 and "Bearer" in nothing.headers.get("www-authenticate", "")
    assert wrong.status_code == 401
    assert right.status_code == 200, right.text
    assert rebinding.status_code == 421
    config = json.loads(printed.split("client config: ", 1)[1].splitlines()[0])
    assert config["headers"]["Authorization"] == f"Bearer {token}" and config["url"] == f"{url}/mcp"


@pytest.mark.integration
def test_allowed_host_names_are_accepted_and_others_refused(lab_config: Path) -> None:
    with serving(lab_config, "127.0.0.21", "--allowed-host", "jexida.test", env={"JEXIDA_TOKEN": "t0ken"}) as (url, _):
        port = url.rsplit(":", 1)[1]
        auth = {**MCP_HEADERS, "Authorization": "Bearer t0ken"}
        named = httpx.post(f"{url}/mcp", json=INITIALIZE, headers={**auth, "Host": f"jexida.test:{port}"})
        other = httpx.post(f"{url}/mcp", json=INITIALIZE, headers={**auth, "Host": f"other.test:{port}"})
        origin = httpx.post(f"{url}/mcp", json=INITIALIZE,
                            headers={**auth, "Host": f"jexida.test:{port}", "Origin": "http://evil.example"})
    assert named.status_code == 200, named.text
    assert other.status_code == 421
    assert origin.status_code == 403


@pytest.mark.integration
def test_an_mcp_session_over_http(worker_lab, lab_config: Path) -> None:  # type: ignore[no-untyped-def]
    with serving(lab_config, "127.0.0.1", env={"JEXIDA_TOKEN": "s3cret"}) as (url, _):

        async def session() -> dict[str, object]:
            http = create_mcp_http_client(headers={"Authorization": "Bearer s3cret"})
            async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
                result = await client.call_tool("offload_to", {"command": "hostname",
                                                               "node_id": worker_lab.nodes[0].name})
                assert not result.is_error, result.content
                return result.structured_content or {}

        result = anyio.run(session)
    assert result["stdout"].strip() == worker_lab.nodes[0].name
