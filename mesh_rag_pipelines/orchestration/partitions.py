"""Static hash shards of the document id, as Dagster partitions: `00`, `01`, ...

A shard is an independent unit of work with a bounded share of a product's documents, so a full
build or a backfill fans out into one run per shard that a run launcher can place anywhere. Each
product sets its shard count in its contract (`shards`): a large product fans out to as many
runs as there are workers, a small one stays at a few.
"""

from functools import cache

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract


@cache
def _partitions(count: int) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([shard_key(shard) for shard in range(count)])


def shard_partitions(contract: DataProductContract) -> dg.StaticPartitionsDefinition:
    return _partitions(contract.shards)


def shard_number(partition_key: str) -> int:
    return int(partition_key)


def shard_key(shard: int) -> str:
    return f"{shard:02d}"
