"""Admin pages for Entra group -> team mappings: audited writes, errors next to the field, one query per list."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.accounts.models import GroupTeamMapping
from apps.accounts.sso import services
from apps.accounts.sso.config import SsoConfig
from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.teams.tests.factories import TeamFactory

LIST = reverse("accounts:group_mappings")
NEW = reverse("accounts:group_mapping_create")
GUID = "5A1B2C3D-4E5F-4a6b-8c7d-9e0f1a2b3c4d"


def state() -> tuple:
    return (
        list(GroupTeamMapping.objects.order_by("pk").values_list("group_id", "label", "team_id", "role")),
        AuditEvent.objects.count(),
    )


def test_empty_list_says_what_to_do(client_for, admin_user):
    page = client_for(admin_user).get(LIST).content.decode()
    assert "No group is mapped to a team yet." in page
    assert f'href="{NEW}"' in page


def test_admin_maps_a_group_and_it_is_audited(client_for, admin_user, team_a):
    response = client_for(admin_user).post(
        NEW, {"group_id": f"  {GUID} ", "label": "Team A leads", "team": team_a.pk, "role": "lead"}
    )
    assert response.status_code == 302 and response["Location"] == LIST
    mapping = GroupTeamMapping.objects.get()
    assert (mapping.group_id, mapping.label, mapping.team, mapping.role) == (
        GUID.lower(),
        "Team A leads",
        team_a,
        "lead",
    )
    event = AuditEvent.objects.get(action="group_mapping.create")
    assert (event.actor, event.team_id, event.after["group_id"]) == (admin_user, team_a.pk, GUID.lower())
    page = client_for(admin_user).get(LIST).content.decode()
    assert "Team A leads" in page and GUID.lower() in page


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"group_id": "", "role": "member"}, "group_id", "Give the group&#x27;s Object Id"),
        ({"group_id": "a b", "role": "member"}, "group_id", "A group id has no spaces"),
        ({"group_id": GUID, "role": "member", "team": ""}, "team", "Choose the team"),
        ({"group_id": GUID, "role": "owner"}, "role", "Select a valid choice"),
    ],
    ids=["no-id", "spaces", "no-team", "bad-role"],
)
def test_bad_input_is_shown_next_to_the_field_and_changes_nothing(client_for, admin_user, team_a, data, field, message):
    data = {"team": team_a.pk, **data}
    before = state()
    response = client_for(admin_user).post(NEW, data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert field in response.context["form"].errors
    assert state() == before


def test_the_same_group_cannot_be_mapped_twice_to_a_team(client_for, admin_user, team_a):
    services.group_mapping_create(actor=Actor(user=admin_user), group_id=GUID, team=team_a, role="member")
    before = state()
    response = client_for(admin_user).post(NEW, {"group_id": GUID.lower(), "team": team_a.pk, "role": "lead"})
    assert "already mapped to this team" in response.content.decode()
    assert state() == before


def test_edit_and_delete_are_audited_and_delete_asks_first(client_for, admin_user, team_a, team_b):
    mapping = services.group_mapping_create(actor=Actor(user=admin_user), group_id=GUID, team=team_a, role="member")
    client = client_for(admin_user)
    edit = reverse("accounts:group_mapping_edit", args=[mapping.pk])
    assert client.get(edit).status_code == 200
    assert client.post(edit, {"group_id": GUID, "label": "Moved", "team": team_b.pk, "role": "lead"}).status_code == 302
    mapping.refresh_from_db()
    assert (mapping.team, mapping.role, mapping.label) == (team_b, "lead", "Moved")
    update = AuditEvent.objects.get(action="group_mapping.update")
    assert update.after == {"label": "Moved", "team_id": team_b.pk, "role": "lead"}

    delete = reverse("accounts:group_mapping_delete", args=[mapping.pk])
    confirm = client.get(delete)
    assert confirm.status_code == 200 and "Delete mapping" in confirm.content.decode()
    assert GroupTeamMapping.objects.exists()
    assert client.post(delete).status_code == 302
    assert not GroupTeamMapping.objects.exists()
    assert AuditEvent.objects.get(action="group_mapping.delete").before["group_id"] == GUID.lower()


def test_non_admins_cannot_see_or_change_mappings(client_for, lead_user, finance_user, team_a):
    for user in (lead_user, finance_user):
        client = client_for(user)
        before = state()
        assert client.get(LIST).status_code == 403
        assert client.post(NEW, {"group_id": GUID, "team": team_a.pk, "role": "lead"}).status_code == 403
        assert state() == before


def test_list_query_count_does_not_grow_with_mappings(client_for, admin_user, django_assert_max_num_queries):
    client = client_for(admin_user)
    services.group_mapping_create(actor=Actor.system(), group_id="g-0", team=TeamFactory(), role="member", label="zero")
    with CaptureQueriesContext(connection) as one:
        assert client.get(LIST).status_code == 200
    for n in range(1, 12):
        services.group_mapping_create(actor=Actor.system(), group_id=f"g-{n}", team=TeamFactory(), role="lead")
    with django_assert_max_num_queries(len(one.captured_queries)):
        page = client.get(LIST)
    assert page.content.decode().count("Delete…") == 12


def test_roles_and_teams_come_from_app_roles_and_mapped_groups(db, settings, team_a, team_b):
    settings.PARETO_ENTRA_TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    settings.PARETO_ENTRA_ADMIN_ROLES = ["Ops.Admin"]
    settings.PARETO_ENTRA_FINANCE_ROLES = ["Money"]
    GroupTeamMapping.objects.create(group_id="g-member", team=team_a, role="member")
    GroupTeamMapping.objects.create(group_id="g-lead", team=team_a, role="lead")
    GroupTeamMapping.objects.create(group_id="g-b", team=team_b, role="member")
    claims = {"tid": settings.PARETO_ENTRA_TENANT_ID.upper(), "oid": "OID-1", "name": "Ann", "roles": ["Ops.Admin"]}

    identity = services.identity_from_claims(
        claims=claims, config=SsoConfig.from_settings(), group_ids=["g-member", "g-lead", "g-b", "g-none"]
    )

    assert identity.platform_roles == frozenset({"admin"})
    assert identity.team_roles == {"team-a": "lead", "team-b": "member"}  # lead wins within a team
    assert (identity.issuer, identity.subject) == (settings.PARETO_ENTRA_TENANT_ID, "oid-1")
    unknown = services.identity_from_claims(claims=claims, config=SsoConfig.from_settings(), group_ids=None)
    assert unknown.team_roles is None  # Graph failed: memberships are left alone


def test_mappings_have_an_audited_django_admin(client_for, admin_user, team_a):
    from apps.core.tests.adminform import superuser

    services.group_mapping_create(actor=Actor.system(), group_id=GUID, team=team_a, role="member")
    client = client_for(superuser())
    assert client.get(reverse("admin:accounts_groupteammapping_changelist")).status_code == 200
    mapping = GroupTeamMapping.objects.get()
    response = client.post(
        reverse("admin:accounts_groupteammapping_change", args=[mapping.pk]),
        {"group_id": GUID, "label": "via admin", "team": team_a.pk, "role": "lead"},
    )
    assert response.status_code == 302
    assert AuditEvent.objects.get(action="group_mapping.admin_update").after == {"label": "via admin", "role": "lead"}
