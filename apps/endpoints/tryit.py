"""“Try it”: send one chat completion to a ready endpoint from the server and report what came back.

The request goes from the control plane, not the browser, so the endpoint needs no CORS and the person needs no
token of their own; the latency is measured here, around the HTTP call. Proxy variables from the environment are
ignored (`trust_env=False`): the endpoint is on the cluster's network, not behind the corporate proxy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests
from django.core.exceptions import ValidationError

from .models import Endpoint

MAX_TOKENS = 32
DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_PROMPT_CHARS = 2000
BODY_EXCERPT_CHARS = 500


@dataclass(frozen=True)
class TryResult:
    ok: bool
    latency_ms: int
    answer: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    status: int | None = None  # the HTTP status, when there was an answer at all
    error: str = ""


def _excerpt(text: str) -> str:
    text = text.strip()
    return text if len(text) <= BODY_EXCERPT_CHARS else f"{text[:BODY_EXCERPT_CHARS]}…"


def _answer_text(body: Any) -> str | None:
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def endpoint_try(*, endpoint: Endpoint, prompt: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> TryResult:
    """POST one chat completion (`max_tokens` 32) to `<base_url>/chat/completions` as the endpoint's model.

    Bad input (not ready, no base URL, empty prompt) raises ValidationError; anything the endpoint does wrong
    (no connection, timeout, non-200, unexpected body) is a TryResult with `ok=False` and a message to show.
    """
    prompt = (prompt or "").strip()
    if not prompt:
        raise ValidationError({"prompt": "Write a prompt to send."})
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValidationError({"prompt": f"Keep the prompt under {MAX_PROMPT_CHARS} characters."})
    if endpoint.state != Endpoint.State.READY:
        raise ValidationError(
            f"Only a ready endpoint can be tried; this one is {endpoint.get_state_display().lower()}."
        )
    if not endpoint.base_url:
        raise ValidationError("The endpoint has no base URL yet.")

    url = f"{endpoint.base_url.rstrip('/')}/chat/completions"
    payload: dict[str, Any] = {
        "model": endpoint.served_model_id,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
    }
    started = time.monotonic()

    def elapsed() -> int:
        return round((time.monotonic() - started) * 1000)

    with requests.Session() as session:
        session.trust_env = False
        try:
            response = session.post(url, json=payload, timeout=timeout)
        except requests.Timeout:
            return TryResult(ok=False, latency_ms=elapsed(), error=f"No answer within {timeout:g} s from {url}.")
        except requests.RequestException as exc:
            return TryResult(ok=False, latency_ms=elapsed(), error=f"Could not reach {url}: {exc}")
    latency = elapsed()
    if response.status_code != 200:
        body = _excerpt(response.text) or "(empty body)"
        return TryResult(
            ok=False, latency_ms=latency, status=response.status_code, error=f"HTTP {response.status_code}: {body}"
        )
    try:
        body = response.json()
    except ValueError:
        return TryResult(
            ok=False, latency_ms=latency, status=200, error=f"The answer is not JSON: {_excerpt(response.text)}"
        )
    answer = _answer_text(body)
    if answer is None:
        return TryResult(
            ok=False,
            latency_ms=latency,
            status=200,
            error=f"The answer has no choices[0].message.content: {_excerpt(response.text)}",
        )
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return TryResult(ok=True, latency_ms=latency, answer=answer, usage=usage, status=200)
