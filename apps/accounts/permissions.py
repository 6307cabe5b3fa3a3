"""The one set of permission helpers every page and API view uses.

Roles: platform `admin` and `finance` (on the user), team `lead` and `member` (on memberships).

| what                          | admin | finance | lead (own team) | member (own team) |
| ----------------------------- | ----- | ------- | --------------- | ----------------- |
| see a team, its quotas/budget | all   | all     | yes             | yes               |
| edit teams, quotas, catalog,  | yes   | no      | no              | no                |
|   GPU types/prices, clusters  |       |         |                 |                   |
| edit budgets                  | yes   | yes     | no              | no                |
| manage memberships            | yes   | no      | yes             | no                |
| read audit events             | all   | all     | own teams       | no                |
| read catalog and GPU prices   | yes   | yes     | yes             | yes               |
| see cluster connection config | yes   | no      | no              | no                |
| see endpoints, quota requests | all   | all     | yes             | yes               |
| request/change/delete/retry   | yes   | no      | yes             | no                |
|   endpoints, ask for quota    |       |         |                 |                   |
| try an endpoint (send prompts)| yes   | no      | yes             | yes               |
| approve/reject requests       | yes   | no      | no              | no                |

Everything is computed once per request (`access_for`) and cached on the request's user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

if TYPE_CHECKING:
    from rest_framework.views import APIView

    from apps.accounts.models import User

M = TypeVar("M")


@dataclass(frozen=True)
class Access:
    authenticated: bool
    is_admin: bool = False
    is_finance: bool = False
    lead_team_ids: frozenset[int] = field(default_factory=frozenset)
    member_team_ids: frozenset[int] = field(default_factory=frozenset)  # all teams, lead or member

    # --- what the person is -------------------------------------------------------------------
    @property
    def sees_all_teams(self) -> bool:
        return self.is_admin or self.is_finance

    @property
    def is_lead(self) -> bool:
        return bool(self.lead_team_ids)

    @property
    def has_any_role(self) -> bool:
        return self.is_admin or self.is_finance or bool(self.member_team_ids)

    # --- per-team checks ----------------------------------------------------------------------
    def can_view_team(self, team_id: int) -> bool:
        return self.sees_all_teams or team_id in self.member_team_ids

    def can_manage_members(self, team_id: int) -> bool:
        return self.is_admin or team_id in self.lead_team_ids

    def can_edit_budget(self) -> bool:
        return self.is_admin or self.is_finance

    def can_view_audit(self) -> bool:
        return self.sees_all_teams or self.is_lead

    def can_request_endpoints(self, team_id: int) -> bool:
        """Request, change, delete and retry the team's endpoints, and ask for more of its quota."""
        return self.is_admin or team_id in self.lead_team_ids

    def can_use_endpoints(self, team_id: int) -> bool:
        """Send prompts to the team's endpoints ("Try it"): its people and admins; finance only reads."""
        return self.is_admin or team_id in self.member_team_ids

    def can_view_team_audit(self, team_id: int) -> bool:
        """The same rule as `scope_audit`, for one team: whether to show its audit events at all."""
        return self.sees_all_teams or team_id in self.lead_team_ids

    # --- platform-wide checks -----------------------------------------------------------------
    def can_administer(self) -> bool:
        """Teams, quotas, catalog, GPU types and prices, clusters."""
        return self.is_admin

    # --- scoping querysets --------------------------------------------------------------------
    def visible_team_ids_q(self, field_name: str = "team_id") -> Q:
        if self.sees_all_teams:
            return Q()
        return Q(**{f"{field_name}__in": self.member_team_ids})

    def scope(self, qs: QuerySet[M], field_name: str = "team_id") -> QuerySet[M]:  # type: ignore[type-var]
        """Rows of teams this person may see."""
        if not self.authenticated:
            return qs.none()
        return qs.filter(self.visible_team_ids_q(field_name))

    def scope_audit(self, qs: QuerySet[M]) -> QuerySet[M]:  # type: ignore[type-var]
        if self.sees_all_teams:
            return qs
        if self.is_lead:
            return qs.filter(team_id__in=self.lead_team_ids)
        return qs.none()


ANONYMOUS = Access(authenticated=False)
_CACHE_ATTR = "_pareto_access"


def access_for(user: User | Any) -> Access:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return ANONYMOUS
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    from apps.teams.models import Membership

    leads: set[int] = set()
    members: set[int] = set()
    for team_id, role in Membership.objects.filter(user_id=user.pk).values_list("team_id", "role"):
        members.add(team_id)
        if role == Membership.Role.LEAD:
            leads.add(team_id)
    access = Access(
        authenticated=True,
        is_admin=user.is_platform_admin or user.is_superuser,
        is_finance=user.is_finance,
        lead_team_ids=frozenset(leads),
        member_team_ids=frozenset(members),
    )
    setattr(user, _CACHE_ATTR, access)
    return access


def forget_access(user: Any) -> None:
    """Drop the cached Access after a change to the user's own roles in the same request."""
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


# --- pages --------------------------------------------------------------------------------------
ViewFunc = Callable[..., HttpResponse]


def require(check: Callable[[Access], bool]) -> Callable[[ViewFunc], ViewFunc]:
    """Decorator for page views: sign-in required (redirect), then `check(access)` or 403."""
    from django.contrib.auth.views import redirect_to_login

    def decorator(view: ViewFunc) -> ViewFunc:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not check(access_for(request.user)):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def signed_in(access: Access) -> bool:
    return access.authenticated


def is_admin(access: Access) -> bool:
    return access.is_admin


def can_view_audit(access: Access) -> bool:
    return access.can_view_audit()


def can_request_some_endpoint(access: Access) -> bool:
    """Admins, and leads of at least one team: who may open the endpoint and quota request forms."""
    return access.is_admin or access.is_lead


# --- API ----------------------------------------------------------------------------------------
class AdminWritesOthersRead(BasePermission):
    """Any signed-in person reads; only platform admins write. Row scoping is the view's queryset."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        access = access_for(request.user)
        if not access.authenticated:
            return False
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        return access.is_admin


class AdminOnly(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        return access_for(request.user).is_admin


class CanViewAudit(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        return access_for(request.user).can_view_audit()
