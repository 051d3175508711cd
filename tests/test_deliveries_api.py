"""`GET /v1/developer/webhook-deliveries`: keyset paging, filters, tenancy and 400s."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from phonebooth.config import Settings
from phonebooth.storage.db import Database
from phonebooth.storage.deliveries import record_delivery
from phonebooth.storage.orgs import create_organization, default_organization
from phonebooth.storage.tables import WebhookDelivery
from tests.conftest import Api
from tests.helpers import other_org_key

PATH = "/v1/developer/webhook-deliveries"
BASE_TIME = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
RESULT_KEYS = {
    "id",
    "event_id",
    "event_type",
    "call_id",
    "source",
    "endpoint_id",
    "endpoint_label",
    "url",
    "status",
    "attempt_count",
    "http_status",
    "failure_category",
    "errors",
    "latency_ms",
    "last_attempt_at",
    "next_retry_at",
}


class Seeder:
    """Writes delivery rows straight to the app's database, as the webhook sender would."""

    def __init__(self, db: Database, org_id: int) -> None:
        self.db = db
        self.org_id = org_id

    async def add(
        self,
        *,
        created_at: datetime | None = None,
        org_id: int | None = None,
        event_type: str = "telephony.complete",
        status: str = "delivered",
        source: Literal["endpoint", "legacy"] = "endpoint",
        endpoint_id: str | None = "11111111-1111-4111-8111-111111111111",
        call_id: int | None = 1001,
        **extra: Any,
    ) -> WebhookDelivery:
        fields: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "endpoint_label": "logs" if endpoint_id else None,
            "url": "https://hooks.example.com/events",
            "blocking": False,
            "payload": {"type": event_type},
            "attempt_count": 1,
            "http_status": 200,
            "failure_category": None,
            "errors": None,
            "latency_ms": 42,
            "attempted_at": BASE_TIME,
        }
        fields.update(extra)
        async with self.db.session() as session:
            row = await record_delivery(
                session,
                org_id=self.org_id if org_id is None else org_id,
                event_type=event_type,
                call_id=call_id,
                source=source,
                endpoint_id=endpoint_id,
                status=status,
                **fields,
            )
            if created_at is not None:  # pin the order (and force ties) independent of the clock
                row.created_at = created_at
            await session.commit()
            return row


@pytest.fixture
async def seeder(api: Api, app_settings: Settings) -> AsyncIterator[Seeder]:
    db = Database(app_settings.resolved_database_url)
    try:
        async with db.session() as session:
            org = await default_organization(session)
            assert org is not None
        yield Seeder(db, org.id)
    finally:
        await db.dispose()


async def page(api: Api, **params: Any) -> dict[str, Any]:
    response = await api.get(PATH, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [r["id"] for r in body["results"]]


async def test_paging_120_rows_by_50_has_no_duplicates_or_gaps(api: Api, seeder: Seeder) -> None:
    # Seven rows share each timestamp, so ties straddle both page boundaries (49/50, 99/100).
    rows = [await seeder.add(created_at=BASE_TIME + timedelta(seconds=i // 7)) for i in range(120)]
    expected = [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]

    first = await page(api, limit=50)
    assert (len(first["results"]), first["has_more"], first["limit"]) == (50, True, 50)
    assert isinstance(first["next_cursor"], str)
    second = await page(api, limit=50, cursor=first["next_cursor"])
    assert (len(second["results"]), second["has_more"]) == (50, True)
    assert second["next_cursor"] not in (None, first["next_cursor"])
    third = await page(api, limit=50, cursor=second["next_cursor"])
    assert (len(third["results"]), third["has_more"], third["next_cursor"]) == (20, False, None)

    assert ids(first) + ids(second) + ids(third) == expected


async def test_default_limit_and_exact_page_end(api: Api, seeder: Seeder) -> None:
    for i in range(50):
        await seeder.add(created_at=BASE_TIME + timedelta(milliseconds=i))
    body = await page(api)
    assert body["limit"] == 50
    assert len(body["results"]) == 50
    assert body["has_more"] is False  # exactly `limit` rows left: no empty trailing page
    assert body["next_cursor"] is None


async def test_empty_log(api: Api) -> None:
    assert await page(api) == {"results": [], "has_more": False, "next_cursor": None, "limit": 50}


async def test_newest_first_without_pinned_times(api: Api, seeder: Seeder) -> None:
    first = await seeder.add()
    second = await seeder.add()
    assert ids(await page(api)) == [second.id, first.id]


async def test_result_has_exactly_the_contract_keys(api: Api, seeder: Seeder) -> None:
    retry_at = BASE_TIME + timedelta(seconds=30)
    row = await seeder.add(
        status="retrying",
        http_status=503,
        failure_category="http_error",
        errors=["HTTP 503"],
        latency_ms=120,
        attempt_count=2,
        next_retry_at=retry_at,
    )
    legacy = await seeder.add(
        source="legacy",
        endpoint_id=None,
        event_type="call.incoming",
        status="failed",
        failure_category="invalid_config",
        errors=["unknown key 'status'"],
        blocking=True,
        created_at=BASE_TIME - timedelta(hours=1),
    )
    results = {r["id"]: r for r in (await page(api))["results"]}
    assert set(results) == {row.id, legacy.id}
    assert all(set(r) == RESULT_KEYS for r in results.values())
    assert results[row.id] == {
        "id": row.id,
        "event_id": row.event_id,
        "event_type": "telephony.complete",
        "call_id": 1001,
        "source": "endpoint",
        "endpoint_id": "11111111-1111-4111-8111-111111111111",
        "endpoint_label": "logs",
        "url": "https://hooks.example.com/events",
        "status": "retrying",
        "attempt_count": 2,
        "http_status": 503,
        "failure_category": "http_error",
        "errors": ["HTTP 503"],
        "latency_ms": 120,
        "last_attempt_at": "2025-03-01T12:00:00Z",
        "next_retry_at": "2025-03-01T12:00:30Z",
    }
    assert results[legacy.id]["source"] == "legacy"
    assert results[legacy.id]["endpoint_id"] is None
    assert results[legacy.id]["endpoint_label"] is None
    assert results[legacy.id]["errors"] == ["unknown key 'status'"]


async def test_each_filter_narrows(api: Api, seeder: Seeder) -> None:
    other_endpoint = "22222222-2222-4222-8222-222222222222"
    old = await seeder.add(created_at=BASE_TIME - timedelta(days=2))
    failed = await seeder.add(status="failed", created_at=BASE_TIME)
    retrying = await seeder.add(status="retrying", created_at=BASE_TIME + timedelta(seconds=1))
    tool = await seeder.add(event_type="telephony.tool", created_at=BASE_TIME + timedelta(hours=1))
    elsewhere = await seeder.add(endpoint_id=other_endpoint, call_id=2002, created_at=BASE_TIME)
    legacy = await seeder.add(
        source="legacy", endpoint_id=None, call_id=None, created_at=BASE_TIME + timedelta(hours=2)
    )

    def found(body: dict[str, Any]) -> set[str]:
        return set(ids(body))

    assert found(await page(api, status="failed")) == {failed.id}
    assert found(await page(api, status="retrying")) == {retrying.id}
    assert found(await page(api, status="delivered")) == {old.id, tool.id, elsewhere.id, legacy.id}
    assert found(await page(api, event_type="telephony.tool")) == {tool.id}
    assert found(await page(api, event_type="web.tool")) == set()
    assert found(await page(api, endpoint_id=other_endpoint)) == {elsewhere.id}
    assert found(await page(api, call_id=2002)) == {elsewhere.id}
    assert found(await page(api, call_id=1001)) == {old.id, failed.id, retrying.id, tool.id}
    since = {failed.id, retrying.id, tool.id, elsewhere.id, legacy.id}
    assert found(await page(api, since="2025-03-01T12:00:00Z")) == since
    assert found(await page(api, since="2025-03-01T14:00:00+02:00")) == since
    assert found(await page(api, since="2025-03-01T12:00:00")) == since  # naive means UTC
    assert found(await page(api, since="2025-03-01T12:00:00.000001Z")) == since - {
        failed.id,
        elsewhere.id,
    }
    combined = await page(api, status="delivered", call_id=1001, since="2025-03-01T00:00:00Z")
    assert found(combined) == {tool.id}


async def test_filters_apply_across_pages(api: Api, seeder: Seeder) -> None:
    wanted = []
    for i in range(7):
        status = "failed" if i % 2 else "delivered"
        row = await seeder.add(status=status, created_at=BASE_TIME + timedelta(seconds=i))
        if status == "failed":
            wanted.append(row.id)
    first = await page(api, status="failed", limit=2)
    second = await page(api, status="failed", limit=2, cursor=first["next_cursor"])
    assert second["has_more"] is False
    assert ids(first) + ids(second) == list(reversed(wanted))


async def test_another_organization_sees_nothing(
    api: Api, seeder: Seeder, app_settings: Settings
) -> None:
    older = await seeder.add(created_at=BASE_TIME)
    newer = await seeder.add(created_at=BASE_TIME + timedelta(seconds=1))
    other = api.as_key(await other_org_key(app_settings))
    assert await page(other) == {"results": [], "has_more": False, "next_cursor": None, "limit": 50}
    assert (await page(other, call_id=1001))["results"] == []
    # A cursor names a position, not an organization: a copied one reveals nothing either.
    cursor = (await page(api, limit=1))["next_cursor"]
    assert (await page(other, cursor=cursor))["results"] == []
    assert ids(await page(api, cursor=cursor)) == [older.id]

    async with seeder.db.session() as session:
        stranger = await create_organization(session, "stranger")
        await session.commit()
    await seeder.add(org_id=stranger.id, created_at=BASE_TIME + timedelta(seconds=2))
    assert ids(await page(api)) == [newer.id, older.id]


async def test_a_member_key_may_read(api: Api, seeder: Seeder) -> None:
    row = await seeder.add()
    created = await api.post("/v1/developer/api-keys", json={"name": "dev", "role": "member"})
    assert created.status_code == 201, created.text
    assert ids(await page(api.as_key(created.json()["key"]))) == [row.id]


async def test_needs_a_key(api: Api) -> None:
    assert (await api.client.get(PATH)).status_code == 401


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "%%%",
        _b64("garbage"),
        _b64("2025-03-01T12:00:00+00:00|"),
        _b64("2025-03-01T12:00:00|11111111-1111-4111-8111-111111111111"),  # naive
        _b64("yesterday|11111111-1111-4111-8111-111111111111"),
        _b64("2025-03-01T12:00:00+00:00|" + "x" * 37),
        base64.urlsafe_b64encode(b"\xff\xfe\x00|x").decode(),
        "A" * 500,
    ],
)
async def test_bad_cursor_is_400_naming_the_field(api: Api, seeder: Seeder, cursor: str) -> None:
    await seeder.add()
    response = await api.get(PATH, params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["cursor"]
    assert "cursor" in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "pending"}, "status"),
        ({"status": "DELIVERED"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"call_id": "abc"}, "call_id"),
        ({"call_id": 2**63}, "call_id"),
        ({"since": "last week"}, "since"),
        ({"endpoint_id": "x" * 37}, "endpoint_id"),
    ],
)
async def test_bad_query_is_400_naming_the_field(
    api: Api, params: dict[str, Any], field: str
) -> None:
    response = await api.get(PATH, params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert [e["field"] for e in body["errors"]] == [field]
    assert isinstance(body["detail"], str)
