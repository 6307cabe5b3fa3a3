"""Single sign-on writes: signing a person in from the provider's answer, group -> team mappings, security events."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from apps.accounts.identity import Identity, identity_sign_in
from apps.accounts.models import GroupTeamMapping, User, normalize_group_id
from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.services import model_create, model_delete, model_update
from apps.teams.models import Membership, Team

from . import client, graph
from .config import SsoConfig
from .tokens import JwksCache, verify_id_token

security_log = logging.getLogger("pareto.security")

REJECTED = "security.sso_rejected"
NAME_LIMIT = 150  # User.first_name / last_name

JWKS = JwksCache(lambda uri: client.get_json(uri, timeout=SsoConfig.from_settings().http_timeout))


def reset_caches() -> None:
    JWKS.clear()
    client.reset_caches()


# --- signing in -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SsoSignIn:
    user: User
    groups_error: str | None  # Graph could not list the groups: memberships were left as they were


def sso_sign_in(
    *, config: SsoConfig, flow: dict[str, Any], auth_response: dict[str, str], source_ip: str | None
) -> SsoSignIn:
    """Redeem the code, verify the ID token, work out roles and teams, and find or create the user.

    Raises client.FlowRejected, tokens.TokenRejected, identity.InactiveUser (refused: audit them) or
    client.SsoUnavailable (nothing refused; the provider or Graph is down or Pareto is misconfigured).
    """
    tokens = client.flow_redeem(config, flow=flow, auth_response=auth_response)
    document = client.discovery(config)
    claims = verify_id_token(
        tokens.id_token,
        config=config,
        issuer=client.expected_issuer(config, document),
        jwks_uri=str(document["jwks_uri"]),
        nonce=client.expected_nonce(flow),
        algorithms=document.get("id_token_signing_alg_values_supported"),
        jwks=JWKS,
    )
    group_ids: list[str] | None
    groups_error = None
    if graph.has_groups_overage(claims):
        try:
            group_ids = graph.member_group_ids(
                access_token=tokens.access_token, graph_url=config.graph_url, timeout=config.http_timeout
            )
        except graph.GraphError as exc:
            security_log.warning("groups overage for %s: %s", claims.get("oid") or claims.get("sub"), exc)
            group_ids, groups_error = None, str(exc)
    else:
        raw = claims.get("groups", [])
        group_ids = [str(g) for g in raw] if isinstance(raw, list) else []
    identity = identity_from_claims(claims=claims, config=config, group_ids=group_ids)
    user = identity_sign_in(identity=identity, source_ip=source_ip)
    return SsoSignIn(user=user, groups_error=groups_error)


def identity_from_claims(*, claims: dict[str, Any], config: SsoConfig, group_ids: list[str] | None) -> Identity:
    """Verified claims -> Identity. Entra: keyed on tid + oid; a generic provider: on iss + sub.

    `group_ids` None means "unknown" (Graph failed): team memberships are then left as they are.
    """
    if config.is_entra:
        issuer, subject = str(claims["tid"]).lower(), str(claims["oid"]).lower()
    else:
        issuer, subject = str(claims["iss"]), str(claims["sub"])
    email = str(claims.get("email") or "")
    username = str(claims.get("preferred_username") or email or claims.get("upn") or subject)
    first, last = str(claims.get("given_name") or ""), str(claims.get("family_name") or "")
    if not first and not last:
        first = str(claims.get("name") or "")
    roles = claims.get("roles", [])
    role_values = {str(r) for r in roles} if isinstance(roles, list) else set()
    platform_roles = set()
    if role_values & config.admin_roles:
        platform_roles.add("admin")
    if role_values & config.finance_roles:
        platform_roles.add("finance")
    return Identity(
        issuer=issuer,
        subject=subject,
        username=username,
        email=email[:254],
        first_name=first[:NAME_LIMIT],
        last_name=last[:NAME_LIMIT],
        # The provider is the authority on platform roles of its people: no app role, no platform role.
        platform_roles=frozenset(platform_roles),
        team_roles=None if group_ids is None else team_roles_for_groups(group_ids),
    )


def team_roles_for_groups(group_ids: list[str]) -> dict[str, str]:
    """Team slug -> role for the mapped groups among `group_ids`; lead wins when several groups name a team."""
    wanted = {normalize_group_id(g) for g in group_ids if g}
    roles: dict[str, str] = {}
    for slug, role in GroupTeamMapping.objects.filter(group_id__in=wanted).values_list("team__slug", "role"):
        if roles.get(slug) != Membership.Role.LEAD:
            roles[slug] = role
    return roles


# --- security events -----------------------------------------------------------------------------------
def sso_rejection_record(
    *, reason: str, detail: str, source_ip: str | None, claims: dict[str, Any] | None = None
) -> AuditEvent:
    """An audit event for a refused sign-in. Nobody is signed in, so the actor is the anonymous caller."""
    seen = {k: v for k, v in (claims or {}).items() if isinstance(v, str | int | float | list)}
    security_log.warning("single sign-on refused (%s) from %s: %s", reason, source_ip or "?", detail)
    return AuditEvent.objects.create(
        actor=None,
        actor_label="anonymous",
        action=REJECTED,
        target_type="accounts.sso",
        target_id="",
        target_label=f"sign-in refused: {reason}",
        after={"reason": reason, "detail": detail[:1000], "claims": seen},
        source_ip=source_ip,
    )


# --- group -> team mappings --------------------------------------------------------------------------------
MAPPING_FIELDS = ("group_id", "label", "team", "role")


def _mapping_data(*, group_id: str, label: str, team: Team | None, role: str) -> dict[str, Any]:
    group_id = normalize_group_id(group_id or "")
    if not group_id:
        raise ValidationError({"group_id": "Give the group's Object Id from Entra ID (a GUID)."})
    if team is None:
        raise ValidationError({"team": "Choose the team the group's members join."})
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"Choose {' or '.join(Membership.Role.values)}."})
    return {"group_id": group_id, "label": (label or "").strip(), "team": team, "role": role}


def group_mapping_create(
    *, actor: Actor, group_id: str, team: Team | None, role: str, label: str = ""
) -> GroupTeamMapping:
    data = _mapping_data(group_id=group_id, label=label, team=team, role=role)
    return model_create(GroupTeamMapping, actor=actor, action="group_mapping.create", data=data, team=data["team"])


def group_mapping_update(
    *, actor: Actor, mapping: GroupTeamMapping, group_id: str, team: Team | None, role: str, label: str = ""
) -> GroupTeamMapping:
    data = _mapping_data(group_id=group_id, label=label, team=team, role=role)
    return model_update(
        mapping, actor=actor, action="group_mapping.update", data=data, allowed=MAPPING_FIELDS, team=data["team"]
    )


def group_mapping_delete(*, actor: Actor, mapping: GroupTeamMapping) -> None:
    model_delete(mapping, actor=actor, action="group_mapping.delete", team=mapping.team)
