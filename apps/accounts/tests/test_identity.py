"""identity_sign_in: users keyed on issuer + subject, roles and provider memberships kept in step, all audited."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db import connection, connections, transaction

from apps.accounts import services
from apps.accounts.identity import Identity, identity_sign_in
from apps.accounts.models import User
from apps.accounts.tests.factories import UserFactory
from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.teams.models import Membership
from apps.teams.tests.factories import MembershipFactory, TeamFactory

TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
OID = "00000000-0000-0000-66f3-3332eca7ea81"
IP = "203.0.113.99"


def alice(**overrides) -> Identity:
    fields = {
        "issuer": TENANT,
        "subject": OID,
        "username": "alice@contoso.test",
        "email": "alice@contoso.test",
        "first_name": "Alice",
        "last_name": "Liddell",
    }
    return Identity(**{**fields, **overrides})


def memberships(user: User) -> dict[str, tuple[str, str]]:
    return {m.team.slug: (m.role, m.source) for m in Membership.objects.select_related("team").filter(user=user)}


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_first_sign_in_creates_the_user_and_audits_it(db):
    user = identity_sign_in(identity=alice(platform_roles=frozenset({"finance"})), source_ip=IP)

    stored = User.objects.get(pk=user.pk)
    assert (stored.identity_issuer, stored.identity_subject) == (TENANT, OID)
    assert (stored.username, stored.email, stored.first_name) == ("alice@contoso.test", "alice@contoso.test", "Alice")
    assert (stored.is_finance, stored.is_platform_admin) == (True, False)
    assert not stored.has_usable_password()
    [event] = events("user.create_from_identity")
    assert (event.actor_id, event.actor_label, event.source_ip, event.team_id) == (user.pk, user.username, IP, None)
    assert event.target_id == str(user.pk)
    assert event.after == {"issuer": TENANT, "subject": OID, "roles": ["finance"]}


def test_second_sign_in_finds_the_user_by_issuer_and_subject_not_by_name_or_mail(db):
    first = identity_sign_in(identity=alice())
    renamed = alice(username="alice.l@fabrikam.test", email="alice.l@fabrikam.test", last_name="Hargreaves")

    again = identity_sign_in(identity=renamed, source_ip=IP)

    assert again.pk == first.pk
    assert User.objects.count() == 1
    stored = User.objects.get(pk=first.pk)
    assert (stored.email, stored.last_name) == ("alice.l@fabrikam.test", "Hargreaves")
    assert stored.username == "alice@contoso.test"  # the portal's username stays stable
    [event] = events("user.update_from_identity")
    assert (event.actor_label, event.source_ip) == ("alice@contoso.test", IP)
    assert event.before == {"email": "alice@contoso.test", "last_name": "Liddell"}
    assert event.after == {"email": "alice.l@fabrikam.test", "last_name": "Hargreaves"}


def test_same_mail_and_name_from_another_subject_or_tenant_is_another_user(db):
    first = identity_sign_in(identity=alice())
    other_subject = identity_sign_in(identity=alice(subject="11111111-2222-3333-4444-555555555555"))
    other_tenant = identity_sign_in(identity=alice(issuer="72f988bf-86f1-41af-91ab-2d7cd011db47"))

    assert len({first.pk, other_subject.pk, other_tenant.pk}) == 3
    assert len({first.username, other_subject.username, other_tenant.username}) == 3


def test_sign_in_does_not_take_over_a_local_user_with_the_same_username_or_mail(db):
    local = UserFactory(username="alice@contoso.test", email="alice@contoso.test", is_platform_admin=True)

    user = identity_sign_in(identity=alice())

    assert user.pk != local.pk
    assert user.username != "alice@contoso.test"
    UnicodeUsernameValidator()(user.username)  # a username the rest of the portal accepts
    user.full_clean()
    local.refresh_from_db()
    assert (local.identity_subject, local.is_platform_admin) == ("", True)
    assert not user.is_platform_admin


def test_a_user_made_after_a_username_collision_can_still_be_changed(admin_user):
    UserFactory(username="alice@contoso.test")
    user = identity_sign_in(identity=alice())

    services.user_set_roles(actor=Actor(user=admin_user), user=user, is_finance=True)

    assert User.objects.get(pk=user.pk).is_finance


def test_username_collisions_keep_finding_a_free_name(db):
    UserFactory(username="bob")
    made = {identity_sign_in(identity=alice(username="bob", subject=f"abcdefgh-{n:04d}")).username for n in range(3)}
    assert len(made) == 3 and "bob" not in made
    assert User.objects.filter(username__startswith="bob").count() == 4


def test_a_username_with_characters_django_refuses_is_made_valid(db):
    user = identity_sign_in(identity=alice(username="Alice Liddell (Contoso)", subject="auth0|12345"))
    UnicodeUsernameValidator()(user.username)
    user.full_clean()


def test_platform_roles_follow_the_provider_and_are_audited(db):
    user = identity_sign_in(identity=alice(platform_roles=frozenset({"admin"})))
    assert User.objects.get(pk=user.pk).is_platform_admin

    identity_sign_in(identity=alice(platform_roles=frozenset({"finance"})), source_ip=IP)

    stored = User.objects.get(pk=user.pk)
    assert (stored.is_platform_admin, stored.is_finance) == (False, True)
    [event] = events("user.update_from_identity")
    assert event.before == {"is_platform_admin": True, "is_finance": False}
    assert event.after == {"is_platform_admin": False, "is_finance": True}


def test_no_word_on_roles_leaves_them_alone_and_writes_no_event(db):
    user = identity_sign_in(identity=alice(platform_roles=frozenset({"admin"})))
    count = AuditEvent.objects.count()

    identity_sign_in(identity=alice(platform_roles=None))

    assert User.objects.get(pk=user.pk).is_platform_admin
    assert AuditEvent.objects.count() == count


def test_memberships_from_the_provider_are_added_changed_and_removed_manual_ones_kept(db):
    research, platform, finance, manual_only = (
        TeamFactory(slug="research"),
        TeamFactory(slug="platform"),
        TeamFactory(slug="finance-ops"),
        TeamFactory(slug="manual-only"),
    )
    user = identity_sign_in(identity=alice(team_roles={"research": "member", "platform": "lead"}), source_ip=IP)
    assert memberships(user) == {"research": ("member", "idp"), "platform": ("lead", "idp")}
    # An admin adds two memberships by hand: one in a team the provider also names, one it never names.
    MembershipFactory(user=user, team=manual_only, role="lead", source="manual")
    MembershipFactory(user=user, team=finance, role="member", source="manual")
    before = AuditEvent.objects.count()

    identity_sign_in(
        identity=alice(team_roles={"platform": "member", "finance-ops": "lead", "no-such-team": "lead"}),
        source_ip=IP,
    )

    assert memberships(user) == {
        "platform": ("member", "idp"),  # role changed
        "finance-ops": ("member", "manual"),  # manual: the provider does not change it
        "manual-only": ("lead", "manual"),  # manual: kept although the provider does not name it
    }
    new = list(AuditEvent.objects.order_by("id")[before:])
    assert {(e.action, e.team_id) for e in new} == {
        ("membership.update", platform.pk),
        ("membership.remove", research.pk),
    }
    assert all((e.actor_id, e.source_ip) == (user.pk, IP) for e in new)
    update = next(e for e in new if e.action == "membership.update")
    assert (update.before, update.after) == ({"role": "lead"}, {"role": "member"})
    remove = next(e for e in new if e.action == "membership.remove")
    assert remove.before == {"user": user.pk, "role": "member", "source": "idp"}


def test_added_memberships_are_audited_in_their_team(db):
    team = TeamFactory(slug="research")
    user = identity_sign_in(identity=alice(team_roles={"research": "lead"}), source_ip=IP)

    [event] = events("membership.add")
    assert (event.actor_id, event.source_ip, event.team_id) == (user.pk, IP, team.pk)
    assert event.after == {"user": user.pk, "role": "lead", "source": "idp"}


def test_an_unknown_team_role_grants_nothing(db):
    TeamFactory(slug="research")
    user = identity_sign_in(identity=alice(team_roles={"research": "owner"}))
    assert memberships(user) == {}

    identity_sign_in(identity=alice(team_roles={"research": "lead"}))
    identity_sign_in(identity=alice(team_roles={"research": "superuser"}))
    assert memberships(user) == {}


def test_no_word_on_teams_leaves_memberships_alone(db):
    TeamFactory(slug="research")
    user = identity_sign_in(identity=alice(team_roles={"research": "lead"}))
    count = AuditEvent.objects.count()

    identity_sign_in(identity=alice(team_roles=None))

    assert memberships(user) == {"research": ("lead", "idp")}
    assert AuditEvent.objects.count() == count


def test_an_unchanged_sign_in_writes_no_event(db):
    TeamFactory(slug="research")
    identity_sign_in(identity=alice(team_roles={"research": "member"}, platform_roles=frozenset()))
    count = AuditEvent.objects.count()

    identity_sign_in(identity=alice(team_roles={"research": "member"}, platform_roles=frozenset()))

    assert AuditEvent.objects.count() == count


@pytest.mark.django_db(transaction=True)
def test_two_first_sign_ins_at_once_make_one_user():
    """Tab B signs in while tab A's new user is uncommitted: B's insert collides, and B carries on with A's user."""
    created, release = threading.Event(), threading.Event()
    outcomes: dict[str, dict[str, Any]] = {"a": {}, "b": {}}
    pid: dict[str, int] = {}

    def tab(name: str) -> None:
        try:
            if name == "a":
                with transaction.atomic():
                    outcomes[name]["user"] = identity_sign_in(identity=alice(), source_ip=IP)
                    created.set()
                    assert release.wait(10)
            else:
                assert created.wait(10)
                connection.ensure_connection()
                pid["b"] = connection.connection.info.backend_pid
                outcomes[name]["user"] = identity_sign_in(identity=alice(email="new@contoso.test"), source_ip=IP)
        except Exception as exc:
            outcomes[name]["error"] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=tab, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 10
        waiting = False
        while time.monotonic() < deadline and not waiting:
            if "b" in pid:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid["b"]])
                    row = cursor.fetchone()
                    waiting = bool(row and row[0] == "Lock")
            time.sleep(0.02)
        assert waiting, "tab B never waited for tab A's insert"
    finally:
        release.set()
        for thread in threads:
            thread.join(15)

    assert "error" not in outcomes["a"] and "error" not in outcomes["b"], outcomes
    assert outcomes["a"]["user"].pk == outcomes["b"]["user"].pk
    assert User.objects.count() == 1
    assert User.objects.get().email == "new@contoso.test"
    assert AuditEvent.objects.filter(action="user.create_from_identity").count() == 1
