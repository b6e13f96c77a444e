"""Static hash shards of the document id: every product is split the same way.

A shard is an independent unit of work with a bounded share of a product's documents, so a full
build or a backfill fans out into SHARD_COUNT runs that a run launcher can place anywhere.
"""

import dagster as dg

from mesh_rag_pipelines import settings

SHARDS = dg.StaticPartitionsDefinition([f"{i:02d}" for i in range(settings.SHARD_COUNT)])


def shard_number(partition_key: str) -> int:
    return int(partition_key)


def shard_key(shard: int) -> str:
    return f"{shard:02d}"
