"""“Try it”: one chat completion sent from the server to a ready endpoint.

The endpoint is stood in for by a small OpenAI-style HTTP server started in the test (http.server in a thread):
a real socket, real HTTP and real timeouts, only the model is fake. The real vLLM path is tested end to end
elsewhere.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.endpoints import tryit
from apps.endpoints.models import Endpoint
from apps.endpoints.tests.factories import EndpointFactory


@dataclass
class FakeServer:
    url: str
    mode: str = "ok"  # ok | slow | error | not_json | no_choices
    delay: float = 0.0
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class OpenAIHandler(BaseHTTPRequestHandler):
    server: Any

    def do_POST(self) -> None:
        fake: FakeServer = self.server.fake
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        fake.seen.append((self.path, body))
        if fake.delay:
            time.sleep(fake.delay)
        if fake.mode == "error":
            self._send(500, b'{"error": {"message": "CUDA out of memory"}}')
        elif fake.mode == "not_json":
            self._send(200, b"<html>proxy login</html>")
        elif fake.mode == "no_choices":
            self._send(200, b'{"object": "chat.completion", "choices": []}')
        else:
            prompt = body["messages"][-1]["content"]
            answer = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"Echo: {prompt}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
            }
            self._send(200, json.dumps(answer).encode())

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@pytest.fixture
def fake_endpoint_server() -> Iterator[FakeServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OpenAIHandler)
    server.daemon_threads = True
    fake = FakeServer(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.fake = fake  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def endpoint(team_a, lead_user, member_user, fake_endpoint_server) -> Endpoint:
    return EndpointFactory(
        team=team_a,
        name="chat",
        requested_by=lead_user,
        state=Endpoint.State.READY,
        base_url=f"{fake_endpoint_server.url}/team-a/chat/v1",
    )


def try_url(endpoint: Endpoint) -> str:
    return reverse("endpoints:try", args=[endpoint.pk])


# --- the service ----------------------------------------------------------------------------------------
def test_sends_one_chat_completion_as_the_endpoints_model(endpoint, fake_endpoint_server):
    result = tryit.endpoint_try(endpoint=endpoint, prompt="  Hello there  ")
    assert result.ok, result.error
    assert result.answer == "Echo: Hello there"
    assert result.usage == {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}
    [(path, body)] = fake_endpoint_server.seen
    assert path == "/team-a/chat/v1/chat/completions"
    assert body == {
        "model": endpoint.served_model_id,
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 32,
    }


def test_latency_is_measured_around_the_call(endpoint, fake_endpoint_server):
    fake_endpoint_server.delay = 0.3
    result = tryit.endpoint_try(endpoint=endpoint, prompt="hi")
    assert result.ok
    assert 300 <= result.latency_ms < 5000


def test_a_slow_endpoint_times_out_with_a_clear_message(endpoint, fake_endpoint_server):
    fake_endpoint_server.delay = 2.0
    result = tryit.endpoint_try(endpoint=endpoint, prompt="hi", timeout=0.3)
    assert not result.ok
    assert result.error.startswith("No answer within 0.3 s from http://127.0.0.1:")
    assert 300 <= result.latency_ms < 2000


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("error", 'HTTP 500: {"error": {"message": "CUDA out of memory"}}'),
        ("not_json", "The answer is not JSON: <html>proxy login</html>"),
        ("no_choices", "The answer has no choices[0].message.content"),
    ],
)
def test_bad_answers_are_reported_not_raised(endpoint, fake_endpoint_server, mode, expected):
    fake_endpoint_server.mode = mode
    result = tryit.endpoint_try(endpoint=endpoint, prompt="hi")
    assert not result.ok
    assert result.error.startswith(expected)


def test_unreachable_endpoint_is_reported(endpoint, fake_endpoint_server):
    Endpoint.objects.filter(pk=endpoint.pk).update(base_url="http://127.0.0.1:9/nothing/v1")
    endpoint.refresh_from_db()
    result = tryit.endpoint_try(endpoint=endpoint, prompt="hi", timeout=2)
    assert not result.ok and result.error.startswith("Could not reach http://127.0.0.1:9/nothing/v1/chat/completions")


def test_proxy_settings_from_the_environment_are_ignored(endpoint, fake_endpoint_server, monkeypatch):
    # A proxy that does not exist: with the environment trusted, the request would fail to connect.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert tryit.endpoint_try(endpoint=endpoint, prompt="hi").ok


def test_only_a_ready_endpoint_with_a_url_and_a_prompt_is_tried(endpoint, fake_endpoint_server):
    with pytest.raises(ValidationError) as info:
        tryit.endpoint_try(endpoint=endpoint, prompt="   ")
    assert "prompt" in info.value.message_dict
    Endpoint.objects.filter(pk=endpoint.pk).update(state=Endpoint.State.UPDATING)
    endpoint.refresh_from_db()
    with pytest.raises(ValidationError, match="Only a ready endpoint can be tried; this one is updating"):
        tryit.endpoint_try(endpoint=endpoint, prompt="hi")
    assert fake_endpoint_server.seen == []


# --- the page -------------------------------------------------------------------------------------------
def test_member_tries_the_endpoint_and_sees_answer_usage_and_latency(client_for, endpoint, member_user):
    events = AuditEvent.objects.count()
    response = client_for(member_user).post(try_url(endpoint), {"prompt": "What is 2+2?"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Echo: What is 2+2?" in html
    assert "total tokens 15" in html and "completion tokens 4" in html
    result = response.context["result"]
    assert f"{result.latency_ms} ms" in html
    assert AuditEvent.objects.count() == events  # trying changes nothing


def test_htmx_gets_only_the_try_block(client_for, endpoint, lead_user):
    response = client_for(lead_user).post(try_url(endpoint), {"prompt": "hi"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "<html" not in html and html.lstrip().startswith("<div") and 'id="try-it"' in html
    assert "Echo: hi" in html


def test_errors_from_the_endpoint_are_shown_clearly(client_for, endpoint, member_user, fake_endpoint_server):
    fake_endpoint_server.mode = "error"
    html = client_for(member_user).post(try_url(endpoint), {"prompt": "hi"}).content.decode()
    assert 'role="alert"' in html
    assert "HTTP 500: {&quot;error&quot;: {&quot;message&quot;: &quot;CUDA out of memory&quot;}}" in html


def test_empty_prompt_is_an_error_next_to_the_field(client_for, endpoint, member_user, fake_endpoint_server):
    response = client_for(member_user).post(try_url(endpoint), {"prompt": ""})
    assert response.context["try_form"].errors["prompt"]
    assert 'id="id_prompt_error"' in response.content.decode()
    assert fake_endpoint_server.seen == []


def test_endpoint_that_is_not_ready_says_so(client_for, endpoint, member_user, fake_endpoint_server):
    Endpoint.objects.filter(pk=endpoint.pk).update(state=Endpoint.State.FAILED)
    client = client_for(member_user)
    assert "only a ready endpoint answers" in client.get(try_url(endpoint)).content.decode()
    html = client.post(try_url(endpoint), {"prompt": "hi"}).content.decode()
    assert "Only a ready endpoint can be tried; this one is failed." in html
    assert fake_endpoint_server.seen == []


def test_finance_and_other_teams_cannot_send_prompts(
    client_for, endpoint, finance_user, other_lead, fake_endpoint_server
):
    assert client_for(finance_user).post(try_url(endpoint), {"prompt": "hi"}).status_code == 403
    assert client_for(other_lead).post(try_url(endpoint), {"prompt": "hi"}).status_code == 404
    assert client_for(None).post(try_url(endpoint), {"prompt": "hi"}).status_code == 302
    assert fake_endpoint_server.seen == []
