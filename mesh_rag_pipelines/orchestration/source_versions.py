"""A source shard's data version as Dagster records it, and whether the index has caught up.

A shard seen at a new version is recorded twice, with the same version: as an observation of the
external `<product>/source` asset, from which Dagster judges the index assets stale (the UI's
stale badge), and as a runless materialization, to which their automation conditions react.

A shard is *behind* while the latest recorded version of its source is newer than what its last
chunks run read: the run records, as Dagster's provenance, the source's newest event when it
started. A change recorded while automation was off, or while a run that started before it was
in progress, is therefore still behind after that run, and is announced again.
"""

from __future__ import annotations

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.orchestration.assets import chunks_key, source_key
from mesh_rag_pipelines.orchestration.partitions import shard_key

# Dagster's tags for a data version and for the input event a materialization read.
DATA_VERSION_TAG = "dagster/data_version"
INPUT_EVENT_TAG = "dagster/input_event_pointer/{key}"


def source_version_events(
    contract: DataProductContract,
    shard: int,
    version: str,
    metadata: dict[str, int | str],
    *,
    observed: bool = True,
) -> list[dg.AssetObservation | dg.AssetMaterialization]:
    """`observed=False` records a version without judging the index stale by it: a baseline
    the index is known to hold already."""
    common = {
        "partition": shard_key(shard),
        "tags": {DATA_VERSION_TAG: version},
        "metadata": dict(metadata),
    }
    events: list[dg.AssetObservation | dg.AssetMaterialization] = []
    if observed:
        events.append(dg.AssetObservation(source_key(contract), **common))  # type: ignore[arg-type]
    events.append(dg.AssetMaterialization(source_key(contract), **common))  # type: ignore[arg-type]
    return events


def recorded_versions(
    instance: dg.DagsterInstance, contract: DataProductContract
) -> dict[int, tuple[int, str]]:
    """Per shard, the latest recorded source version: (its storage id, the version)."""
    found = {}
    for shard in range(contract.shards):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(source_key(contract), asset_partitions=[shard_key(shard)]),
            limit=1,
        ).records
        if records and records[0].asset_materialization is not None:
            tags = records[0].asset_materialization.tags or {}
            found[shard] = (records[0].storage_id, tags.get(DATA_VERSION_TAG, ""))
    return found


def shards_behind(
    instance: dg.DagsterInstance,
    contract: DataProductContract,
    recorded: dict[int, tuple[int, str]] | None = None,
) -> set[int]:
    """Shards whose latest recorded source version came after their last chunks run started."""
    recorded = recorded_versions(instance, contract) if recorded is None else recorded
    pointer_tag = INPUT_EVENT_TAG.format(key=source_key(contract).to_user_string())
    behind = set()
    for shard, (storage_id, _) in recorded.items():
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(chunks_key(contract), asset_partitions=[shard_key(shard)]),
            limit=1,
        ).records
        if not records or records[0].asset_materialization is None:
            behind.add(shard)
            continue
        pointer = (records[0].asset_materialization.tags or {}).get(pointer_tag)
        read_up_to = int(pointer) if pointer and pointer.isdigit() else records[0].storage_id
        if read_up_to < storage_id:
            behind.add(shard)
    return behind
