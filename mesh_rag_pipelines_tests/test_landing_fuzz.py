"""Property: whatever a landing file holds, no run fails, every well-formed record is applied,
every other record is quarantined (applied + quarantined = every record), and a delete that
follows a poison record still applies.

Files in all three formats mix well-formed upserts and deletes with poison records: random
bytes, bytes that are not UTF-8, NUL characters, fields over the size limit, empty texts,
versions out of range, values of the wrong type, broken quoting and runaway nesting. Vectors come
from the hashing test double: this test is about reading files, not about the model.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.contracts.loader import load_contract
from mesh_rag_pipelines.pipeline import SyncDeps, sync_shard
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.hashing_embedder import HashingEmbedder
from mesh_rag_pipelines_tests.landing import (
    contract_variant,
    debezium_event,
    dms_row,
    expected_chunks,
    indexed_chunks,
    project_event,
    ticket,
)

FORMATS = ("jsonl", "debezium", "dms_csv")
LIMIT = 4096  # source.max_record_bytes of the fuzzed products: big fields stay cheap
POISONS = (
    "random_bytes",
    "not_utf8",
    "nul_in_text",
    "over_the_size_limit",
    "empty_text",
    "version_out_of_range",
    "wrong_type",
    "broken_quoting",
    "runaway_nesting",
)
_products = itertools.count()

words = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20
)
good_text = st.lists(words, min_size=1, max_size=12).map(" ".join).filter(str.strip)


def _line(source_format: str, op: str, record: dict[str, Any]) -> str:
    if source_format == "jsonl":
        return project_event("upsert" if op == "upsert" else "delete", record)
    if source_format == "debezium":
        return (
            debezium_event("c", None, record)
            if op == "upsert"
            else (debezium_event("d", record, None))
        )
    return dms_row("I" if op == "upsert" else "D", record).rstrip("\n")


def _poison(source_format: str, kind: str, record: dict[str, Any], noise: bytes) -> bytes:
    """One record that must be quarantined, on one line."""
    if kind == "random_bytes":
        # No line breaks (they would make more records); for CSV no quote or comma either, so
        # that the line is one malformed record rather than the start of a quoted value.
        banned = b"\n\r" + (b'",' if source_format == "dms_csv" else b"")
        junk = bytes(b for b in noise if b not in banned) or b"junk"
        return b"#" + junk
    if kind == "not_utf8":
        return _line(source_format, "upsert", record).encode().replace(b"a", b"\xe9\xff", 1)
    if kind == "runaway_nesting":
        if source_format == "dms_csv":
            return b"I" + b"," * 3  # too few columns
        return b"[" * 50_000
    if kind == "broken_quoting":
        if source_format == "dms_csv":
            return f'I,"{record["ticket_id"]},{record["version"]},never closed'.encode()
        return _line(source_format, "upsert", record).encode()[:-3]
    changed = {
        "nul_in_text": {"body": "poison\x00body"},
        "over_the_size_limit": {"body": "x" * (LIMIT + 1)},
        "empty_text": {"body": ""},
        "version_out_of_range": {"version": 2**64 + 5},
        "wrong_type": {"version": "not a version"},
    }[kind]
    return _line(source_format, "upsert", {**record, **changed}).encode()


def _fuzz_contract(products_dir: Path, source_format: str) -> DataProductContract:
    contract = contract_variant(products_dir, f"fuzz_{next(_products)}", source_format)
    path = products_dir / f"{contract.name}.yaml"
    path.write_text(path.read_text().replace("format:", f"max_record_bytes: {LIMIT}\n  format:", 1))
    return load_contract(path)


@st.composite
def landing_files(draw: st.DrawFn, source_format: str) -> tuple[list[bytes], dict, int, dict]:
    """(lines, the live records expected, poison records, versions of the deleted ids)."""
    count = draw(st.integers(1, 6))
    records = {
        # Versions stay below 19: ticket() dates a version on that day of April.
        f"T-{n}": ticket(f"T-{n}", draw(st.integers(1, 18)), draw(good_text), draw(good_text))
        for n in range(count)
    }
    lines: list[bytes] = [_line(source_format, "upsert", r).encode() for r in records.values()]
    poisons = draw(st.lists(st.sampled_from(POISONS), max_size=5))
    for kind in poisons:
        target = records[f"T-{draw(st.integers(0, count - 1))}"]
        newer = {**target, "version": target["version"] + 1, "body": draw(good_text)}
        noise = draw(st.binary(max_size=200))
        lines.insert(draw(st.integers(0, len(lines))), _poison(source_format, kind, newer, noise))
    deleted = {
        doc_id: records[doc_id]["version"] + 10
        for doc_id in draw(st.lists(st.sampled_from(sorted(records)), unique=True, max_size=2))
    }
    for doc_id, version in deleted.items():
        lines.append(
            _line(source_format, "delete", {**records[doc_id], "version": version}).encode()
        )
    live = {doc_id: r for doc_id, r in records.items() if doc_id not in deleted}
    return lines, live, len(poisons), deleted


def _quarantined(engine: Engine, product: str) -> int:
    with engine.connect() as conn:
        query = f"SELECT count(*) FROM {SCHEMA}.quarantine WHERE product = :p"
        return int(conn.execute(text(query), {"p": product}).scalar_one())


def _states(engine: Engine, product: str) -> dict[str, tuple[int, bool]]:
    with engine.connect() as conn:
        query = f"SELECT doc_id, version, deleted FROM {SCHEMA}.document_state WHERE product = :p"
        return {r.doc_id: (r.version, r.deleted) for r in conn.execute(text(query), {"p": product})}


def _check(
    source_format: str,
    drawn: tuple[list[bytes], dict, int, dict],
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    s3: Any,
) -> None:
    lines, live, poisons, deleted = drawn
    contract = _fuzz_contract(products_dir, source_format)
    body = b"\n".join(lines) + b"\n"
    s3.put_object(Bucket=contract.source.bucket, Key=f"{contract.source.prefix}0001", Body=body)
    embedder = HashingEmbedder(f"test-double:{contract.name}", contract.embedding.dimensions)
    for shard in range(contract.shards):
        sync_shard(contract, shard, SyncDeps(access, embedder))

    # Every poison record is quarantined once, and every other record had its effect.
    shown = [line[:120].decode(errors="replace") for line in lines]
    assert _quarantined(engine, contract.name) == poisons, json.dumps(shown)
    expected_states = {doc_id: (r["version"], False) for doc_id, r in live.items()}
    expected_states |= {doc_id: (version, True) for doc_id, version in deleted.items()}
    assert _states(engine, contract.name) == expected_states
    assert indexed_chunks(engine, contract.name) == expected_chunks(contract, *live.values())


def _property(source_format: str):  # type: ignore[no-untyped-def]
    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(drawn=landing_files(source_format))
    def prop(
        drawn: tuple[list[bytes], dict, int, dict],
        products_dir: Path,
        access: SourceContext,
        engine: Engine,
        s3: Any,
    ) -> None:
        _check(source_format, drawn, products_dir, access, engine, s3)

    return prop


test_no_jsonl_file_fails_a_run_or_loses_a_good_record = _property("jsonl")
test_no_debezium_file_fails_a_run_or_loses_a_good_record = _property("debezium")
test_no_dms_csv_file_fails_a_run_or_loses_a_good_record = _property("dms_csv")
