"""Metering API: chargeback export (JSON and CSV), statements (close), usage per endpoint and its hourly/daily
series. Rows are scoped like the pages: finance and admins see every team, others their own teams."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.permissions import access_for
from apps.core.api import AccessMixin, filter_parameter, query_filter
from apps.endpoints.models import Endpoint
from apps.metering import selectors, services
from apps.metering.models import Statement, StatementLine
from apps.metering.money import round_money

from .serializers import (
    EndpointUsageSerializer,
    MonthSerializer,
    StatementSerializer,
    StatementSummarySerializer,
)

FINANCE_ONLY = "Only finance and admins can generate and close statements."
MONTH_PARAM = OpenApiParameter(
    "month",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    description="YYYY-MM (default: last month for chargeback, this month for usage)",
)
TEAM_FILTER = filter_parameter("team", "Only the team with this slug.")
CSV_COLUMNS = [
    "month",
    "team",
    "cost_center",
    "currency",
    "status",
    "kind",
    "endpoint",
    "gpu_type",
    "gpu_hours",
    "idle_gpu_hours",
    "rate",
    "cost",
    "prompt_tokens",
    "generation_tokens",
    "cost_per_million_tokens",
    "adjusts_month",
    "budget",
    "variance",
    "note",
]


class FinanceOrAdmin(BasePermission):
    message = FINANCE_ONLY

    def has_permission(self, request: Request, view: APIView) -> bool:
        return access_for(request.user).can_edit_budget()


def _month(request: Request, default: dt.date | None = None) -> dt.date:
    if default is not None and not request.query_params.get("month"):
        return default
    try:
        return selectors.parse_month(request.query_params.get("month"))
    except Exception as exc:
        raise exceptions.ValidationError({"month": ["Give a month as YYYY-MM, e.g. 2026-10."]}) from exc


class CsvRenderer(BaseRenderer):
    """Chargeback as CSV: one row per statement line, then a `total` row per statement."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if not isinstance(data, dict) or "statements" not in data:
            writer.writerow(["field", "message"])
            for name, messages in (data or {}).items() if isinstance(data, dict) else []:
                for message in messages if isinstance(messages, list) else [messages]:
                    writer.writerow([name, message])
            return out.getvalue().encode()
        writer.writerow(CSV_COLUMNS)
        for statement in data["statements"]:
            common = [
                statement["month"],
                statement["team"],
                statement["cost_center"],
                statement["currency"],
                statement["status"],
            ]
            for line in statement["lines"]:
                writer.writerow(
                    [
                        *common,
                        line["kind"],
                        line["endpoint_name"],
                        line["gpu_type_sku"],
                        line["gpu_hours"],
                        line["idle_gpu_hours"],
                        line["rate"] or "",
                        line["cost"],
                        line["prompt_tokens"],
                        line["generation_tokens"],
                        line["cost_per_million_tokens"] or "",
                        line["adjusts_month"] or "",
                        "",
                        "",
                        line["note"],
                    ]
                )
            writer.writerow(
                [
                    *common,
                    "total",
                    "",
                    "",
                    "",
                    "",
                    "",
                    statement["total"],
                    "",
                    "",
                    "",
                    "",
                    statement["budget_amount"] or "",
                    statement["variance"] or "",
                    "",
                ]
            )
        return out.getvalue().encode()


def _rounded(statement: dict[str, Any]) -> dict[str, Any]:
    """Amounts on the export carry the currency's minor unit, as billed (the columns hold 4 places)."""
    currency = statement["currency"]
    statement["total"] = str(round_money(Decimal(statement["total"]), currency))
    if statement["variance"] is not None:
        statement["variance"] = str(round_money(Decimal(statement["variance"]), currency))
    for line in statement["lines"]:
        line["cost"] = str(round_money(Decimal(line["cost"]), currency))
    return statement


class ChargebackView(AccessMixin, APIView):
    """A month's chargeback statements with their lines: `/api/v1/chargeback/?month=YYYY-MM` (JSON) or
    `/api/v1/chargeback.csv?month=YYYY-MM` (CSV, also `?format=csv`)."""

    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer, CsvRenderer, BrowsableAPIRenderer]

    @extend_schema(parameters=[MONTH_PARAM, TEAM_FILTER], responses={200: StatementSerializer(many=True)})
    def get(self, request: Request, format: str | None = None) -> Response:
        month = _month(request, default=selectors.previous_month(selectors.current_month()))
        statements = selectors.statements_with_lines(access=self.access, month=month)
        team = query_filter(request, "team")
        if team:
            statements = [s for s in statements if s.team.slug == team]
        payload = [_rounded(dict(StatementSerializer(s).data)) for s in statements]
        response = Response(
            {
                "month": f"{month:%Y-%m}",
                "time_zone": selectors.statement_zone().key,
                "rounding": "amounts rounded half-to-even to the currency's minor unit; lines add up to the total",
                "statements": payload,
            }
        )
        if getattr(request, "accepted_renderer", None) is not None and request.accepted_renderer.format == "csv":
            response["Content-Disposition"] = f'attachment; filename="chargeback-{month:%Y-%m}.csv"'
        return response


class ChargebackGenerateView(AccessMixin, APIView):
    permission_classes = [IsAuthenticated, FinanceOrAdmin]

    @extend_schema(
        request=MonthSerializer,
        responses={200: StatementSummarySerializer(many=True)},
        description="Generate (or regenerate, while open) a month's statements after the month has ended. Closed "
        "statements never change; corrections to them become adjustment lines on the statements written now.",
    )
    def post(self, request: Request) -> Response:
        serializer = MonthSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        month = selectors.parse_month(serializer.validated_data["month"])
        report = services.statements_generate(actor=self.actor, month=month)
        return Response(
            {
                "month": f"{month:%Y-%m}",
                "written": StatementSummarySerializer(report.written, many=True).data,
                "skipped_closed": [s.pk for s in report.skipped_closed],
            }
        )


@extend_schema(tags=["chargeback"])
class StatementViewSet(AccessMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Statements of the teams the caller sees; finance and admins close them."""

    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[Statement]:
        qs = (
            self.access.scope(Statement.objects.all())
            .select_related("team")
            .prefetch_related(Prefetch("lines", queryset=StatementLine.objects.order_by("position", "id")))
            .order_by("-month", "team__slug", "currency")
        )
        if self.action == "list":
            if "month" in self.request.query_params:
                qs = qs.filter(month=_month(self.request))
            team = query_filter(self.request, "team")
            if team:
                qs = qs.filter(team__slug=team)
        return qs

    def get_serializer_class(self) -> type[StatementSerializer]:
        return StatementSummarySerializer if self.action == "list" else StatementSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("month", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False, description="YYYY-MM"),
            TEAM_FILTER,
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses={200: StatementSerializer}, description="Close for good (finance).")
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated, FinanceOrAdmin])
    def close(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        statement = services.statement_close(actor=self.actor, statement=self.get_object())
        return Response(StatementSerializer(self.get_queryset().get(pk=statement.pk)).data)


class UsageView(AccessMixin, APIView):
    """Per-endpoint usage, cost and latency over a month (days in the statement time zone)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(parameters=[MONTH_PARAM, TEAM_FILTER], responses={200: EndpointUsageSerializer(many=True)})
    def get(self, request: Request) -> Response:
        month = _month(request, default=selectors.current_month())
        teams = selectors.visible_teams(self.access)
        slug = query_filter(request, "team")
        if slug:
            teams = teams.filter(slug=slug)
        team_ids = list(teams.values_list("pk", flat=True))
        today = timezone.now().astimezone(selectors.statement_zone()).date()
        last = max(min(selectors.month_last_day(month), today), month)
        rows = selectors.endpoint_usage(team_ids=team_ids, start_day=month, end_day=last)
        data = EndpointUsageSerializer(rows, many=True).data
        return Response({"month": f"{month:%Y-%m}", "time_zone": selectors.statement_zone().key, "endpoints": data})


class UsageSeriesView(AccessMixin, APIView):
    """An endpoint's cost, GPU time, tokens and latency per hour (UTC) or per day (statement time zone)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[
            OpenApiParameter("resolution", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=["hour", "day"]),
            OpenApiParameter("start", OpenApiTypes.DATETIME, OpenApiParameter.QUERY, description="default: 24 h ago"),
            OpenApiParameter("end", OpenApiTypes.DATETIME, OpenApiParameter.QUERY, description="default: now"),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request, pk: int) -> Response:
        resolution = query_filter(request, "resolution", choices=["hour", "day"]) or "hour"
        endpoint = self.access.scope(Endpoint.objects.all()).filter(pk=pk).first()
        if endpoint is None:
            raise exceptions.NotFound()
        now = timezone.now()
        start = _moment(request, "start", now - dt.timedelta(days=1 if resolution == "hour" else 31))
        end = _moment(request, "end", now)
        limit = dt.timedelta(days=31 if resolution == "hour" else 800)
        if end <= start or end - start > limit:
            raise exceptions.ValidationError(
                {"start": [f"Give start before end, at most {limit.days} days apart for {resolution} rows."]}
            )
        rows = selectors.usage_series(endpoint_ids=[endpoint.pk], start=start, end=end, resolution=resolution)
        return Response({"endpoint": endpoint.pk, "resolution": resolution, "rows": rows})


def _moment(request: Request, name: str, default: dt.datetime) -> dt.datetime:
    value = request.query_params.get(name)
    if not value:
        return default
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise exceptions.ValidationError({name: ["Give an ISO 8601 date-time, e.g. 2026-10-01T00:00:00Z."]}) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
