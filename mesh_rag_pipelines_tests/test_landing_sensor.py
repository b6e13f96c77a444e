"""The landing-zone cursor and sensor: every change file is covered by exactly one run request
per shard its events touch, across ticks, same-second writes and listing pages."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.orchestration.landing_sensor import LANDING_OBJECTS_TAG, landing_sensor
from mesh_rag_pipelines.orchestration.resources import IndexStore, LandingZone
from mesh_rag_pipelines.pipeline import SyncDeps, sync_shard
from mesh_rag_pipelines.sources.documents import QUARANTINE_SHARD
from mesh_rag_pipelines.sources.landing_cursor import LandingCursor, new_objects
from mesh_rag_pipelines.sources.s3_landing import LandedObject, list_landed_objects, shards_touched
from mesh_rag_pipelines_tests.helpers import source_ctx

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
PAGE_SIZE = 5


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _obj(key: str, second: int, etag: str = "e1") -> LandedObject:
    return LandedObject(key, etag, _at(second))


def _keys(objects: list[LandedObject]) -> list[str]:
    return [o.key for o in objects]


# --- the cursor, on hand-made listings ---------------------------------------------------------


def test_objects_of_the_same_second_as_the_newest_seen_are_reported_on_the_next_tick() -> None:
    first, cursor = new_objects([_obj("a", 10), _obj("b", 10)], LandingCursor())
    second, cursor = new_objects([_obj("a", 10), _obj("b", 10), _obj("c", 10)], cursor)
    third, _ = new_objects([_obj("a", 10), _obj("b", 10), _obj("c", 10)], cursor)
    assert (_keys(first), _keys(second), third) == (["a", "b"], ["c"], [])


def test_an_object_appearing_late_with_an_older_timestamp_inside_the_lookback_is_reported() -> None:
    lookback = timedelta(seconds=60)
    _, cursor = new_objects([_obj("new", 100)], LandingCursor(), lookback=lookback)
    late, cursor = new_objects([_obj("new", 100), _obj("late", 45)], cursor, lookback=lookback)
    again, _ = new_objects([_obj("new", 100), _obj("late", 45)], cursor, lookback=lookback)
    assert (_keys(late), again) == (["late"], [])


def test_an_object_appearing_later_than_the_lookback_is_left_to_the_shard_ledger() -> None:
    lookback = timedelta(seconds=60)
    _, cursor = new_objects([_obj("new", 100)], LandingCursor(), lookback=lookback)
    late, _ = new_objects([_obj("new", 100), _obj("late", 39)], cursor, lookback=lookback)
    assert late == []


def test_an_object_rewritten_under_the_same_key_is_reported_again() -> None:
    _, cursor = new_objects([_obj("a", 10, etag="v1")], LandingCursor())
    rewritten, _ = new_objects([_obj("a", 12, etag="v2")], cursor)
    assert [(o.key, o.etag) for o in rewritten] == [("a", "v2")]


def test_a_limit_reports_the_oldest_first_and_keeps_the_rest_for_the_next_tick() -> None:
    lookback = timedelta(seconds=60)
    listing = [_obj("c", 500), _obj("b", 20), _obj("a", 10), _obj("d", 500)]
    first, cursor = new_objects(listing, LandingCursor(), lookback=lookback, limit=2)
    second, cursor = new_objects(listing, cursor, lookback=lookback, limit=2)
    third, _ = new_objects(listing, cursor, lookback=lookback, limit=2)
    assert (_keys(first), _keys(second), third) == (["a", "b"], ["c", "d"], [])


def test_the_cursor_forgets_keys_below_the_lookback_and_survives_json() -> None:
    lookback = timedelta(seconds=60)
    listing = [_obj("old", 0), _obj("mid", 50), _obj("new", 100)]
    _, cursor = new_objects(listing, LandingCursor(), lookback=lookback)
    restored = LandingCursor.from_json(cursor.to_json())
    assert restored == cursor
    assert (restored.floor, sorted(restored.seen)) == (_at(40), ["mid", "new"])
    assert new_objects(listing, restored, lookback=lookback)[0] == []


_LOOKBACK_SECONDS = 30


@settings(max_examples=200, deadline=None)
@given(
    writes=st.lists(
        st.tuples(st.integers(0, 300), st.integers(0, _LOOKBACK_SECONDS - 1)),
        min_size=1,
        max_size=40,
    ),
    tick_every=st.integers(1, 20),
    limit=st.one_of(st.none(), st.integers(1, 5)),
)
def test_every_object_visible_within_the_lookback_is_reported_exactly_once(
    writes: list[tuple[int, int]], tick_every: int, limit: int | None
) -> None:
    """Objects written at second `w` become visible `delay` seconds later, in any order."""
    lookback = timedelta(seconds=_LOOKBACK_SECONDS)
    objects = [(_obj(f"k{i:03d}", w), w + delay) for i, (w, delay) in enumerate(writes)]
    reported: list[str] = []
    cursor = LandingCursor()
    last_visible = max(visible for _, visible in objects)
    ticks = list(range(0, last_visible + tick_every, tick_every)) + [last_visible] * len(objects)
    for now in ticks:
        listing = [o for o, visible in objects if visible <= now]
        fresh, cursor = new_objects(listing, cursor, lookback=lookback, limit=limit)
        reported += _keys(fresh)
    assert sorted(reported) == sorted(o.key for o, _ in objects)


# --- reading objects: which shards they touch ---------------------------------------------------


def _event(ticket_id: str, version: int = 1) -> str:
    return json.dumps(
        {
            "op": "upsert",
            "id": ticket_id,
            "version": version,
            "updated_at": "2025-03-01T12:00:00Z",
            "data": {"subject": f"Ticket {ticket_id}", "body": f"Body of {ticket_id}."},
        }
    )


def _put(s3, contract: DataProductContract, name: str, lines: list[str]) -> str:  # type: ignore[no-untyped-def]
    key = f"{contract.source.prefix}{name}"
    s3.put_object(Bucket=contract.source.bucket, Key=key, Body="\n".join(lines).encode())
    return key


def _listing(s3, contract: DataProductContract) -> dict[str, LandedObject]:  # type: ignore[no-untyped-def]
    landed = list_landed_objects(s3, contract.source.bucket or "", contract.source.prefix or "")
    return {o.key: o for o in landed}


def test_an_object_touches_its_events_shards_and_with_bad_lines_the_quarantine_shard(
    contracts: dict[str, DataProductContract],
    s3,  # type: ignore[no-untyped-def]
) -> None:
    contract = contracts["support_tickets"]
    ids = ["T-1", "T-2", "T-3", "T-4", "T-5", "T-6"]
    mixed = _put(s3, contract, "mixed.jsonl", [_event(i) for i in ids] + ["not json"])
    bad = _put(s3, contract, "bad.jsonl", ["not json", '{"op": "upsert"}'])
    empty = _put(s3, contract, "empty.jsonl", [])
    landed = _listing(s3, contract)
    touched = shards_touched(contract, s3, [landed[mixed], landed[bad], landed[empty]])
    shards = sorted({contract.shard_of(i) for i in ids})
    expected: dict[int, list[str]] = {shard: [] for shard in shards}
    for shard in expected:
        expected[shard].append(mixed)
    quarantine = expected.setdefault(QUARANTINE_SHARD, [])
    quarantine += [key for key in (mixed, bad) if key not in quarantine]
    assert {shard: _keys(objects) for shard, objects in touched.items()} == expected


# --- the sensor, against the real S3 endpoint and PostgreSQL -----------------------------------


def _evaluate(sensor: dg.SensorDefinition, cursor: str | None, resources: dict) -> dg.SensorResult:
    context = dg.build_sensor_context(cursor=cursor, resources=resources)
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def _covered(result: dg.SensorResult) -> list[tuple[str, int]]:
    """(object key, shard) for every object each run request covers."""
    return [
        (key, int(request.partition_key or ""))
        for request in result.run_requests or []
        for key in json.loads(request.tags[LANDING_OBJECTS_TAG])
    ]


def _wait_for_a_fresh_second() -> None:
    """The first two batches and the tick between them take about a quarter of a second, so
    starting at a second boundary makes them share one LastModified."""
    time.sleep(1.02 - time.time() % 1)


def test_sensor_requests_each_object_once_per_touched_shard_across_ticks_and_pages(
    contracts: dict[str, DataProductContract],
    s3,  # type: ignore[no-untyped-def]
    s3_endpoint: str,
    database_url: str,
    engine: Engine,
) -> None:
    contract = contracts["support_tickets"]
    sensor = landing_sensor(contract, page_size=PAGE_SIZE)
    resources = {
        "index_store": IndexStore(database_url=database_url),
        "landing_zone": LandingZone(endpoint_url=s3_endpoint),
    }
    warm = _evaluate(sensor, None, resources)
    assert (warm.run_requests, warm.skip_reason is not None) == ([], True)

    touched: dict[str, set[int]] = {}

    def land(first: int, count: int) -> list[str]:
        keys = []
        for n in range(first, first + count):
            ids = [f"T-{n}-{m}" for m in range(1 + n % 3)]
            keys.append(_put(s3, contract, f"batch/{n:03d}.jsonl", [_event(i) for i in ids]))
            touched[keys[-1]] = {contract.shard_of(i) for i in ids}
        return keys

    batches: list[list[str]] = []
    results: list[dg.SensorResult] = []
    cursor = warm.cursor
    _wait_for_a_fresh_second()
    for first, count, pause in [(0, 6, 0.0), (6, 5, 0.0), (11, 7, 1.1), (18, 5, 0.0)]:
        time.sleep(pause)
        batches.append(land(first, count))
        results.append(_evaluate(sensor, cursor, resources))
        cursor = results[-1].cursor
    idle = _evaluate(sensor, cursor, resources)

    landed = _listing(s3, contract)
    total = sum(len(batch) for batch in batches)
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=contract.source.bucket,
            Prefix=contract.source.prefix,
            PaginationConfig={"PageSize": PAGE_SIZE},
        )
    )
    assert (len(landed), total, len(pages)) == (23, 23, 5)
    same_second = Counter(o.last_modified for o in landed.values())
    assert max(same_second.values()) >= 2
    assert landed[batches[0][-1]].last_modified == landed[batches[1][0]].last_modified

    for batch, result in zip(batches, results, strict=True):
        expected = sorted((key, shard) for key in batch for shard in touched[key])
        assert sorted(_covered(result)) == expected
        partitions = sorted(r.partition_key for r in result.run_requests or [])
        assert partitions == [f"{s:02d}" for s in sorted({s for _, s in expected})]
    every = Counter(pair for result in results for pair in _covered(result))
    assert set(every.values()) == {1}
    assert {key for key, _ in every} == set(landed)
    run_keys = [r.run_key for result in results for r in result.run_requests or []]
    assert len(run_keys) == len(set(run_keys))
    assert (idle.run_requests, idle.skip_reason is not None) == ([], True)


def test_sensor_skips_shards_that_already_applied_an_object(
    minilm: Embedder,
    contracts: dict[str, DataProductContract],
    s3,  # type: ignore[no-untyped-def]
    s3_endpoint: str,
    database_url: str,
    engine: Engine,
) -> None:
    contract = contracts["support_tickets"]
    ids = [f"T-{n}" for n in range(12)]
    key = _put(s3, contract, "many.jsonl", [_event(i) for i in ids])
    shards = sorted({contract.shard_of(i) for i in ids})
    assert len(shards) > 1
    applied = shards[0]
    sync_shard(contract, applied, SyncDeps(source_ctx(engine, s3), minilm))
    resources = {
        "index_store": IndexStore(database_url=database_url),
        "landing_zone": LandingZone(endpoint_url=s3_endpoint),
    }
    result = _evaluate(landing_sensor(contract), None, resources)
    assert sorted(_covered(result)) == [(key, shard) for shard in shards if shard != applied]
