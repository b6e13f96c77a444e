"""BEIR SciFact as a data product: a source table, a contract, and a build through the pipeline.

The corpus becomes a `postgres_table` source in the benchmark database (the store's own engine
is the default table source), so a build, an edit and a hard delete go through the same code
as any product.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import ChunkingSpec, DataProductContract, load_contract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.retrieval.evaluation import load_qrels, load_queries
from mesh_rag_pipelines_tests.helpers import grant, source_ctx, sync_all

SCIFACT_DIR = Path(os.environ.get("MESH_RAG_SCIFACT_DIR", "/work/shared/eval/scifact"))
SOURCE_TABLE = "bench_source.scifact"

_CONTRACT = """\
name: {name}
domain: evaluation
owner: team:search-quality
description: BEIR SciFact abstracts (title and text), for retrieval evaluation.
document_type: abstract
source:
  kind: postgres_table
  table: {table}
schema:
  id_field: doc_id
  version_field: revision
  updated_at_field: updated_at
  title_field: title
  text_fields: [text]
acl_groups: [everyone]
freshness:
  sla: 1d
chunking:
  name: {chunker}
  version: 1
  max_words: {max_words}
  overlap_words: {overlap_words}
embedding:
  provider: local
  model: all-MiniLM-L6-v2
  dimensions: 384
  distance: cosine
"""


@dataclass(frozen=True)
class ChunkingChoice:
    chunker: str = "paragraphs"
    max_words: int = 180
    overlap_words: int = 20

    @property
    def product_name(self) -> str:
        return f"scifact_w{self.max_words}_o{self.overlap_words}"

    @property
    def spec(self) -> ChunkingSpec:
        return ChunkingSpec(
            name=self.chunker,  # type: ignore[arg-type]
            version=1,
            max_words=self.max_words,
            overlap_words=self.overlap_words,
        )


@dataclass
class BuildTiming:
    """A `build_product` call: wall time, and what its index results say about where it went."""

    seconds_total: float = 0.0
    seconds_embedding: float = 0.0
    seconds_writing: float = 0.0
    texts_embedded: int = 0
    chunks_written: int = 0
    chunks_removed: int = 0
    documents_changed: int = 0
    documents_deleted: int = 0


def load_corpus(limit: int | None = None) -> list[dict]:
    lines = (SCIFACT_DIR / "corpus.jsonl").read_text().splitlines()
    docs = [json.loads(line) for line in lines if line.strip()]
    return docs[:limit] if limit else docs


def load_test_queries() -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(query id -> text, query id -> {doc id: relevance}) of the 300 test queries."""
    qrels = load_qrels(SCIFACT_DIR / "qrels" / "test.tsv")
    return load_queries(SCIFACT_DIR / "queries.jsonl", judged=qrels), qrels


def create_source_table(engine: Engine, docs: list[dict]) -> None:
    schema, table = SOURCE_TABLE.split(".")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        conn.execute(
            text(
                f"CREATE TABLE {SOURCE_TABLE} (doc_id text PRIMARY KEY, revision bigint NOT NULL, "
                "updated_at timestamptz NOT NULL, title text, text text NOT NULL)"
            )
        )
        conn.execute(text(f"CREATE INDEX ON {SOURCE_TABLE} (updated_at)"))
        conn.execute(
            text(f"INSERT INTO {SOURCE_TABLE} VALUES (:doc_id, 1, :updated_at, :title, :text)"),
            [
                {"doc_id": d["_id"], "updated_at": now, "title": d["title"], "text": d["text"]}
                for d in docs
            ],
        )
        conn.execute(text(f"ANALYZE {SOURCE_TABLE}"))


def write_contract(folder: Path, choice: ChunkingChoice) -> DataProductContract:
    path = folder / f"{choice.product_name}.yaml"
    path.write_text(
        _CONTRACT.format(
            name=choice.product_name,
            table=SOURCE_TABLE,
            chunker=choice.chunker,
            max_words=choice.max_words,
            overlap_words=choice.overlap_words,
        )
    )
    grant(folder, "evaluation", databases=[{"tables": [SOURCE_TABLE]}])
    return load_contract(path)


def timed_build(engine: Engine, contract: DataProductContract, embedder: Embedder) -> BuildTiming:
    """One `build_product` call. A full build and an incremental run are the same call: what
    differs is the state it finds."""
    started = time.perf_counter()
    results = sync_all(contract, source_ctx(engine), embedder)
    timing = BuildTiming(seconds_total=time.perf_counter() - started)
    for chunk_set, index in results:
        timing.seconds_embedding += index.seconds_embedding
        timing.seconds_writing += index.seconds_writing
        timing.texts_embedded += index.texts_embedded
        timing.chunks_written += index.chunks_written
        timing.chunks_removed += index.chunks_removed
        timing.documents_changed += chunk_set.documents_changed
        timing.documents_deleted += chunk_set.documents_deleted
    return timing
