"""Fixtures every test module shares: one user per role over two teams, and signed-in clients."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from apps.accounts.models import User
from apps.accounts.tests.factories import UserFactory
from apps.teams.models import Membership, Team
from apps.teams.tests.factories import MembershipFactory, TeamFactory


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings) -> None:
    """Factories hash a password per user; the production hasher makes that seconds per test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """Templates use {% static %}; the manifest storage needs collectstatic, which unit tests don't run."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def team_a(db: None) -> Team:
    return TeamFactory(slug="team-a", name="Team A")


@pytest.fixture
def team_b(db: None) -> Team:
    return TeamFactory(slug="team-b", name="Team B")


@pytest.fixture
def admin_user(db: None) -> User:
    return UserFactory(username="admin", is_platform_admin=True)


@pytest.fixture
def finance_user(db: None) -> User:
    return UserFactory(username="finance", is_finance=True)


@pytest.fixture
def lead_user(team_a: Team) -> User:
    user = UserFactory(username="lead-a")
    MembershipFactory(user=user, team=team_a, role=Membership.Role.LEAD)
    return user


@pytest.fixture
def member_user(team_a: Team) -> User:
    user = UserFactory(username="member-a")
    MembershipFactory(user=user, team=team_a, role=Membership.Role.MEMBER)
    return user


@pytest.fixture
def other_lead(team_b: Team) -> User:
    user = UserFactory(username="lead-b")
    MembershipFactory(user=user, team=team_b, role=Membership.Role.LEAD)
    return user


@pytest.fixture
def client_for() -> Callable[[User | None], Client]:
    """A Django test client signed in as `user` (or anonymous for None)."""

    def make(user: User | None) -> Client:
        client = Client()
        if user is not None:
            client.force_login(user)
        return client

    return make
