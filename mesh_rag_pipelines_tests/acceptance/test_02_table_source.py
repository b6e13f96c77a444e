"""A row edited in the catalog's PostgreSQL table reaches the index on the contract's poll
cadence (every minute in this session), through the source sensor and automation alone; a change
recorded while automation is switched off shows as stale and is synced once it is on again."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mesh_rag_pipelines_tests.acceptance.harness import (
    AUTOMATION_SENSOR,
    Acceptance,
    wait_for,
)

PRODUCT = "catalog_products"
LOCATION = "commerce"
GROUP = "employees"
SYNC_SECONDS = 150


@dataclass(frozen=True)
class RowChange:
    sku: str
    word: str
    description: str
    changed_at: float


def rewrite_description(acceptance: Acceptance, sku: str) -> RowChange:
    """A new revision of one product row, its description carrying a word nothing else has."""
    word = f"quorvex{uuid.uuid4().hex[:6]}"
    description = (
        f"The {word} trail pack is a 34 liter rucksack for long ridge days, with a roll-top "
        f"closure, a removable aluminum frame sheet and two ice tool loops. Its {word} fabric is "
        "a recycled 210-denier ripstop with a waterproof coating. Hand wash and air dry."
    )
    changed_at = time.time()
    (row,) = acceptance.psql(
        "UPDATE sample_sources.catalog_products SET revision = revision + 1, updated_at = now(),"
        " description = :description WHERE sku = :sku RETURNING sku",
        description=description,
        sku=sku,
    )
    assert row == (sku,)
    return RowChange(sku, word, description, changed_at)


def served_texts(acceptance: Acceptance, change: RowChange) -> list[str]:
    hits = acceptance.hits_of(change.sku, change.description, GROUP, PRODUCT, k=3)
    return [hit["text"] for hit in hits]


def test_an_updated_row_is_synced_by_automation_within_150_s(acceptance: Acceptance) -> None:
    acceptance.wait_until_idle(quiet=5)
    change = rewrite_description(acceptance, "NW-BPK-0001")
    synced = acceptance.wait_for_sync(PRODUCT, change.changed_at, SYNC_SECONDS)
    assert all(run.status == "SUCCESS" for run in synced.values())
    texts = served_texts(acceptance, change)
    assert texts and all(change.word in text for text in texts), texts


@dataclass(frozen=True)
class RecordedWhileOff:
    change: RowChange
    shard: str
    stale_status: dict[str, str]


@pytest.fixture(scope="module")
def recorded_while_automation_off(acceptance: Acceptance) -> Iterator[RecordedWhileOff]:
    """A change the source sensor recorded while automation was stopped, as a user would
    stop it from the Sensors page; automation is put back to its declared status afterwards."""
    acceptance.wait_until_idle(quiet=5)
    assert acceptance.stop_sensor(LOCATION, AUTOMATION_SENSOR) == "STOPPED"
    try:
        change = rewrite_description(acceptance, "NW-BPK-0002")
        (shard,) = wait_for(
            lambda: acceptance.recorded_partitions(PRODUCT, change.changed_at),
            SYNC_SECONDS,
            f"{PRODUCT}_source_sensor to record the new version of {change.sku}",
        )
        stale = acceptance.stale_status(f"{PRODUCT}/chunks", [shard])
        yield RecordedWhileOff(change, shard, stale)
    finally:
        acceptance.reset_sensor(LOCATION, AUTOMATION_SENSOR)


def test_a_recorded_change_shows_its_shard_stale_until_synced(
    recorded_while_automation_off: RecordedWhileOff,
) -> None:
    recorded = recorded_while_automation_off
    assert recorded.stale_status == {recorded.shard: "STALE"}


def test_a_change_recorded_while_automation_was_off_is_synced_once_it_is_on(
    acceptance: Acceptance, recorded_while_automation_off: RecordedWhileOff
) -> None:
    recorded = recorded_while_automation_off
    turned_on_at = time.time()
    assert acceptance.start_sensor(LOCATION, AUTOMATION_SENSOR) == "RUNNING"
    wait_for(
        lambda: recorded.shard in acceptance.synced_partitions(PRODUCT, turned_on_at),
        SYNC_SECONDS,
        f"shard {recorded.shard} of {PRODUCT} to be synced once automation is on",
        interval=3,
        explain=lambda: acceptance.explain_sync(PRODUCT, turned_on_at),
    )
    texts = served_texts(acceptance, recorded.change)
    assert texts and all(recorded.change.word in text for text in texts), texts
