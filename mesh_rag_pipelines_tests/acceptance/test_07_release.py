"""A new chunker in a contract is a release: once the location is reloaded, every shard is
built again beside the live version and, the contract opting in to `auto_swap`, the new index
version goes live when it passes its gate; nobody launches anything."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mesh_rag_pipelines_tests.acceptance.harness import Acceptance, wait_for

PRODUCT = "hr_policies"
LOCATION = "people"
SHARDS = {"00", "01", "02", "03"}
REBUILD_SECONDS = 900
# The verdict runs at most once per 15-minute window of VERDICT_WINDOW_CRON.
RELEASE_SECONDS = 1200


@dataclass(frozen=True)
class ReleaseOutcome:
    live_before: str
    rebuild_error: str | None
    release_error: str | None
    live_after: str


def wait_for_rebuild(acceptance: Acceptance, since: float) -> None:
    wait_for(
        lambda: set(acceptance.synced_partitions(PRODUCT, since)) >= SHARDS,
        REBUILD_SECONDS,
        f"every shard of {PRODUCT}/embeddings to be materialized again",
        interval=5,
        explain=lambda: acceptance.explain_sync(PRODUCT, since),
    )


def wait_for_release(acceptance: Acceptance, since: float, live_before: str) -> None:
    wait_for(
        lambda: any(
            m.metadata.get("live_version") not in (None, "", live_before)
            for m in acceptance.materializations(f"{PRODUCT}/release", since=since)
        ),
        RELEASE_SECONDS,
        f"{PRODUCT}/release to swap in a new live version",
        interval=10,
        explain=lambda: acceptance.explain_sync(PRODUCT, since),
    )


def waited(wait: Callable[..., None], *args: Any) -> str | None:
    """None once the wait is over, or why it timed out."""
    try:
        wait(*args)
    except AssertionError as timeout:
        return str(timeout)
    return None


@pytest.fixture(scope="module")
def release(acceptance: Acceptance) -> ReleaseOutcome:
    """hr_policies' chunker 180 -> 120 words with `release.auto_swap: true`, then a reload."""
    acceptance.wait_until_idle(quiet=5)
    live_before = acceptance.products_json()[PRODUCT]["live_version"]
    acceptance.edit_contract(PRODUCT, "max_words: 180", "max_words: 120")
    acceptance.edit_contract(
        PRODUCT, "  embedding:\n", "  release:\n    auto_swap: true\n  embedding:\n"
    )
    edited_at = time.time()
    location = acceptance.reload_location(LOCATION)
    assert location.loaded, location.error
    rebuild_error = waited(wait_for_rebuild, acceptance, edited_at)
    release_error = rebuild_error or waited(wait_for_release, acceptance, edited_at, live_before)
    live_after = acceptance.products_json()[PRODUCT]["live_version"]
    return ReleaseOutcome(live_before, rebuild_error, release_error, live_after)


def test_every_shard_is_built_again_without_a_manual_step(release: ReleaseOutcome) -> None:
    assert release.rebuild_error is None, release.rebuild_error


def test_the_new_index_version_goes_live_without_a_manual_step(release: ReleaseOutcome) -> None:
    assert release.release_error is None, release.release_error
    assert release.live_after != release.live_before


def test_the_release_asset_names_the_new_live_version(
    acceptance: Acceptance, release: ReleaseOutcome
) -> None:
    assert release.release_error is None, release.release_error
    metadata = acceptance.latest_materialization_metadata(f"{PRODUCT}/release")
    assert metadata["live_version"] == release.live_after != release.live_before
