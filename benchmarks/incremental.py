"""Incremental runs on 1,000 SciFact documents: after a full build, edit one sentence in 1% of
the documents and hard-delete another 1%, then run the pipeline again; then run it once more
with nothing changed.

The ideal number of texts to embed is computed apart from the pipeline, with `chunk_document`:
the chunk texts of the edited documents that no document had before. The anchors (LangChain,
LlamaIndex) were measured in the same 1,000-document setting.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from benchmarks import results, scifact_product
from benchmarks.database import benchmark_database
from benchmarks.scifact import CHOSEN
from mesh_rag_pipelines.chunking import chunk_document
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import embedder_for
from mesh_rag_pipelines.store.database import engine_for
from mesh_rag_pipelines.store.index_versions import live_versions
from mesh_rag_pipelines.store.schema import SCHEMA

ROUNDS = 3
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="incremental")
    parser.add_argument("--documents", type=int, default=1000)
    args = parser.parse_args(argv)
    docs = {d["_id"]: d for d in scifact_product.load_corpus(args.documents)}
    documents = len(docs)
    share = max(1, documents // 100)
    rng = random.Random(7)
    with benchmark_database() as url, tempfile.TemporaryDirectory() as folder:
        engine = engine_for(url)
        scifact_product.create_source_table(engine, list(docs.values()))
        contract = scifact_product.write_contract(Path(folder), CHOSEN)
        embedder = embedder_for(contract.embedding)
        embedder.embed(["warm-up"] * 32)
        full = scifact_product.timed_build(engine, contract, embedder)
        print(f"full build: {full}", flush=True)
        rounds: list[dict[str, Any]] = []
        for number in range(1, ROUNDS + 1):
            chosen = rng.sample(sorted(docs), 2 * share)
            edited, deleted = chosen[:share], chosen[share:]
            ideal = _new_chunk_texts(contract, docs, edited, number)
            _change_source(engine, docs, edited, deleted, number)
            change = scifact_product.timed_build(engine, contract, embedder)
            noop = scifact_product.timed_build(engine, contract, embedder)
            leftover = _rows_of(engine, contract, deleted)
            matches = _index_matches_chunker(engine, contract, docs)
            rounds.append(
                {
                    "edited": len(edited),
                    "deleted": len(deleted),
                    "ideal_texts": ideal,
                    "texts_embedded": change.texts_embedded,
                    "seconds": change.seconds_total,
                    "time_fraction": change.seconds_total / full.seconds_total,
                    "rows_removed": change.chunks_removed,
                    "rows_left_of_deleted": leftover,
                    "noop_texts_embedded": noop.texts_embedded,
                    "noop_seconds": noop.seconds_total,
                    "index_equals_chunker_output": matches,
                    "run": change.__dict__,
                }
            )
            print(f"round {number}: {rounds[-1]}", flush=True)
        engine.dispose()
    fractions = [r["time_fraction"] for r in rounds]
    results.record_details(
        "incremental",
        {
            "documents": documents,
            "full_build": full.__dict__,
            "rounds": rounds,
            "time_fraction": results.spread(fractions),
            "noop_time_fraction": results.spread(
                [r["noop_seconds"] / full.seconds_total for r in rounds]
            ),
        },
    )
    first = rounds[0]
    return {
        "incremental_time_fraction": round(statistics.median(fractions), 4),
        "incremental_texts_embedded": first["texts_embedded"],
        "incremental_changed_chunk_texts": first["ideal_texts"],
        "noop_texts_embedded": max(r["noop_texts_embedded"] for r in rounds),
    }


def _edit_one_sentence(content: str, round_number: int, doc_id: str) -> str:
    """Insert a word into one sentence, chosen by the document id: a one-sentence edit."""
    sentences = _SENTENCE_END.split(content)
    index = random.Random(f"{round_number}/{doc_id}").randrange(len(sentences))
    words = sentences[index].split(" ")
    words.insert(min(1, len(words)), f"(revised{round_number})")
    sentences[index] = " ".join(words)
    return " ".join(sentences)


def _new_chunk_texts(
    contract: DataProductContract, docs: dict[str, dict], edited: list[str], round_number: int
) -> int:
    """Applies the edits to `docs` and returns how many chunk texts are new to the corpus."""
    spec = contract.chunking
    before = {c.text for d in docs.values() for c in chunk_document(spec, d["title"], d["text"])}
    for doc_id in edited:
        docs[doc_id] = {
            **docs[doc_id],
            "text": _edit_one_sentence(docs[doc_id]["text"], round_number, doc_id),
        }
    after = {
        c.text
        for doc_id in edited
        for c in chunk_document(spec, docs[doc_id]["title"], docs[doc_id]["text"])
    }
    return len(after - before)


def _change_source(
    engine: Engine, docs: dict[str, dict], edited: list[str], deleted: list[str], round_number: int
) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                f"UPDATE {scifact_product.SOURCE_TABLE} SET text = :text, "
                "revision = revision + 1, updated_at = now() WHERE doc_id = :doc_id"
            ),
            [{"doc_id": doc_id, "text": docs[doc_id]["text"]} for doc_id in edited],
        )
        conn.execute(
            text(f"DELETE FROM {scifact_product.SOURCE_TABLE} WHERE doc_id = ANY(:ids)"),
            {"ids": deleted},
        )
    for doc_id in deleted:
        del docs[doc_id]


def _rows_of(engine: Engine, contract: DataProductContract, doc_ids: list[str]) -> int:
    table = live_versions(engine, [contract.name])[0].table_name
    with engine.connect() as conn:
        query = text(f"SELECT count(*) FROM {SCHEMA}.{table} WHERE doc_id = ANY(:ids)")
        return conn.execute(query, {"ids": doc_ids}).scalar_one()


def _index_matches_chunker(
    engine: Engine, contract: DataProductContract, docs: dict[str, dict]
) -> bool:
    """The index holds exactly the chunker's output for the live documents (texts; vectors are
    checked by the test suite's rebuild-from-scratch test)."""
    expected = {
        (doc_id, c.chunk_no): c.text
        for doc_id, d in docs.items()
        for c in chunk_document(contract.chunking, d["title"], d["text"])
    }
    table = live_versions(engine, [contract.name])[0].table_name
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT doc_id, chunk_no, text FROM {SCHEMA}.{table}"))
        actual = {(r.doc_id, r.chunk_no): r.text for r in rows}
    return actual == expected
