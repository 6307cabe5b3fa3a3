"""Microsoft Graph: the groups of the signed-in person, when the ID token only says "too many to list".

Entra ID puts at most 200 group ids in a token; beyond that it sends the groups overage claim (`_claim_names`
with `groups`, or `hasgroups`) instead, and the application asks Graph with the person's access token.
"""

from __future__ import annotations

from typing import Any

import requests

from .client import http_session

# transitiveMemberOf: nested groups count, like the `groups` claim with "security groups" configured.
MEMBER_GROUPS_PATH = "/me/transitiveMemberOf/microsoft.graph.group?$select=id&$top=999"
MAX_PAGES = 50  # 50 x 999 groups: far beyond any real person; stops a provider that pages forever


class GraphError(Exception):
    """Graph did not give the groups. The message is for people (shown on the page, without the token)."""


def has_groups_overage(claims: dict[str, Any]) -> bool:
    names = claims.get("_claim_names")
    if isinstance(names, dict) and "groups" in names:
        return True
    return claims.get("hasgroups") in (True, "true", "True")


def member_group_ids(*, access_token: str, graph_url: str, timeout: float) -> list[str]:
    """Every group id the person is a member of, directly or through nested groups."""
    if not access_token:
        raise GraphError("the provider gave no access token for Microsoft Graph")
    base = graph_url.rstrip("/")
    url = base + MEMBER_GROUPS_PATH
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
    ids: list[str] = []
    for _ in range(MAX_PAGES):
        try:
            response = http_session().get(url, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            raise GraphError(f"Microsoft Graph could not be reached ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise GraphError(f"Microsoft Graph answered HTTP {response.status_code}{_graph_message(response)}")
        try:
            body = response.json()
        except ValueError as exc:
            raise GraphError("Microsoft Graph did not answer JSON") from exc
        ids.extend(str(item["id"]) for item in body.get("value", []) if isinstance(item, dict) and item.get("id"))
        next_link = body.get("@odata.nextLink")
        if not next_link:
            return ids
        # The access token only ever goes to the configured Graph.
        if not str(next_link).startswith(base + "/"):
            raise GraphError("Microsoft Graph sent a next page link outside the configured Graph URL")
        url = str(next_link)
    raise GraphError(f"Microsoft Graph sent more than {MAX_PAGES} pages of groups")


def _graph_message(response: requests.Response) -> str:
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return ""
    code = error.get("code") if isinstance(error, dict) else None
    return f" ({code})" if code else ""
