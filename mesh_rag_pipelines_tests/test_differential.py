"""Randomized differential test: incremental runs never diverge from a build from scratch.

Each seeded sequence sends a few documents through a handful of runs of changes: new versions,
late older versions, duplicates, deletes, older deletes, replays of earlier batches, batches in
random order, split across shards and across chunk-set calls, with index refreshes of random
shards in between. A reference model folds the same changes by the version rules:

- within one call the highest version of a document wins, and at equal versions a delete wins;
- an upsert applies iff its version is newer than the stored one;
- a delete applies iff its version is newer than the stored one, or equal to a live one;
- a tombstone keeps its version.

Between runs, sequences also release: the contract moves to another model or chunker (a new
index version, or a retired one brought back), versions are swapped in (forced: no gate here),
rolled back and retired. Every sync keeps every version that is not retired equal to document
state, and a delete reaches every version's table.

After every call the chunk-set and index counts must equal the model's; after the sequence the
document state must equal the model's fold, and every maintained version must equal a build
from scratch of the fold's live documents with its own chunker and model, into a fresh product
with an empty cache.

Every run goes through `pipeline.sync_shard`, the one path assets, jobs and the CLI take: the
sequence's changes reach it through a source kind of the test's own (`QueuedChanges`), which
hands a shard the changes queued for it, as a change stream would; a refresh is a run with
nothing queued. The changes are change-stream events, as landing files carry them; a polled
source's changes (its current state is the truth) are covered by test_incremental_sequence.py.
Vectors come from
a hashing test double (`hashing_embedder.py`), so that the sequences run in seconds; the real
model is used by every other test. A divergence names its seed; `run_sequence(engine,
generate(seed))` replays that sequence alone.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import PrivateAttr
from sqlalchemy import Engine, Table, func, select

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.chunking import chunk_document
from mesh_rag_pipelines.contracts import (
    ChunkingSpec,
    DataProductContract,
    EmbeddingSpec,
    load_contracts,
)
from mesh_rag_pipelines.pipeline import SyncDeps, sync_shard
from mesh_rag_pipelines.releases import ReleaseError, retire, rollback, swap
from mesh_rag_pipelines.settings import Settings
from mesh_rag_pipelines.sources.base import SourceContext, SourceKind
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.documents import DocumentChange, document_checksum
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.index_versions import (
    ensure_index_version,
    index_version_id,
    maintained_versions,
    product_versions,
)
from mesh_rag_pipelines.store.schema import DocumentState, IndexVersion, index_table
from mesh_rag_pipelines_tests.hashing_embedder import HashingEmbedder
from mesh_rag_pipelines_tests.helpers import IndexSnapshot, assert_same_index, index_rows, shard_of

SEQUENCES = 200
SHARDS = list(range(settings.DEFAULT_SHARDS))
WORKERS = 2
DIMENSIONS = 16
# Two documents in each of the four shards.
DOCUMENT_POOL = [f"ticket-{n}" for n in (0, 1, 3, 10, 6, 7, 15, 16)]
WORDS = (
    "order refund carrier label parcel tent stove zipper seam warranty return invoice strap",
    "buckle size colour delay courier damaged missing exchange sleeping bag lantern boots",
)
VOCABULARY = " ".join(WORDS).split(" ")
KINDS = (
    "upsert_new",
    "upsert_skipping_a_version",
    "late_older_version",
    "upsert_older_again",
    "duplicate",
    "delete",
    "delete_older",
    "replay_earlier_batch",
)
WEIGHTS = (6, 2, 2, 2, 2, 3, 2, 2)


SHIPPED_TICKETS = next(c for c in load_contracts() if c.name == "support_tickets")


# What a sequence's contract moves between: two chunkers, two model revisions.
CHUNKERS = (
    ChunkingSpec(name="paragraphs", version=1, max_words=20, overlap_words=5),
    ChunkingSpec(name="paragraphs", version=2, max_words=30, overlap_words=0),
)
MODELS = (
    EmbeddingSpec(provider="openai", model="hashing-test-double", dimensions=DIMENSIONS),
    EmbeddingSpec(
        provider="openai", model="hashing-test-double", dimensions=DIMENSIONS, revision="2"
    ),
)


class QueuedChanges(SourceKind):
    """A change stream of the test's own: a shard's read returns what was queued for it."""

    kind: Literal["queued_changes"] = "queued_changes"
    dagster_kind: ClassVar[str] = "test"
    main_field: ClassVar[str] = "source"
    refs_are_ids: ClassVar[bool] = False
    _queued: dict[int, list[DocumentChange]] = PrivateAttr(default_factory=dict)

    def queue(self, shard: int, changes: list[DocumentChange]) -> None:
        self._queued.setdefault(shard, []).extend(changes)

    def read(self, contract: Any, shard: int, state: Any, ctx: Any) -> SourceRead:
        return SourceRead(changes=self._queued.pop(shard, []))

    def observe(self, contract: Any, ctx: Any, states: Any) -> dict:
        return {}

    def where(self, contract: Any) -> str:
        return "the sequence's queue"

    def preflight(self, contract: Any, ctx: Any) -> None:
        return None

    def refusal(self, contract: Any, policy: Any) -> None:
        return None


def _contract(
    name: str,
    source: QueuedChanges,
    chunking: ChunkingSpec = CHUNKERS[0],
    embedding: EmbeddingSpec = MODELS[0],
) -> DataProductContract:
    """The shipped ticket product with small chunks, the test double's model identity, and
    the sequence's queue as its source."""
    return SHIPPED_TICKETS.model_copy(
        update={"name": name, "chunking": chunking, "embedding": embedding, "source": source}
    )


# --- generating sequences ----------------------------------------------------------------------


@dataclass(frozen=True)
class Apply:
    shard: int
    changes: list[DocumentChange]


@dataclass(frozen=True)
class Refresh:
    shard: int


@dataclass(frozen=True)
class Release:
    """Between runs: move the contract to (chunker, model), or swap / roll back / retire."""

    action: str  # "contract", "swap", "rollback", "retire"
    chunker: int = 0
    model: int = 0
    pick: int = 0
    shard: int = -1


@dataclass
class GeneratedSequence:
    seed: int
    shards: list[int]
    runs: list[list[Apply | Refresh | Release]] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)


def _paragraph(rng: random.Random) -> str:
    return " ".join(rng.choices(VOCABULARY, k=rng.randint(6, 26))).capitalize() + "."


def _revised(rng: random.Random, content: str | None) -> str:
    """A new body: one paragraph edited, the same body (a metadata-only change), or all new."""
    if content is None or rng.random() < 0.3:
        return "\n\n".join(_paragraph(rng) for _ in range(rng.randint(1, 3)))
    paragraphs = content.split("\n\n")
    if rng.random() < 0.25:
        return content
    paragraphs[rng.randrange(len(paragraphs))] = _paragraph(rng)
    return "\n\n".join(paragraphs)


def _upsert(rng: random.Random, doc_id: str, version: int, content: str) -> DocumentChange:
    title = f"Ticket {doc_id}"
    metadata = {"status": rng.choice(["open", "pending", "solved"])}
    return DocumentChange(
        doc_id=doc_id,
        version=version,
        op="upsert",
        title=title,
        content=content,
        metadata=metadata,
        checksum=document_checksum(title, content, metadata),
    )


def generate(seed: int) -> GeneratedSequence:
    rng = random.Random(seed)
    docs = rng.sample(DOCUMENT_POOL, rng.randint(2, 4))
    sequence = GeneratedSequence(seed, sorted({shard_of(doc) for doc in docs}))
    top = dict.fromkeys(docs, 0)  # highest version any event of the document has carried
    history: dict[str, dict[int, DocumentChange]] = {doc: {} for doc in docs}
    late: list[DocumentChange] = []
    delivered: list[list[DocumentChange]] = []

    def new_upsert(doc: str, version: int) -> DocumentChange:
        previous = history[doc][max(history[doc])].content if history[doc] else None
        change = _upsert(rng, doc, version, _revised(rng, previous))
        history[doc][version] = change
        top[doc] = max(top[doc], version)
        return change

    for _ in range(rng.randint(2, 5)):
        batch: list[DocumentChange] = []
        for _ in range(rng.randint(1, 4)):
            kind = rng.choices(KINDS, WEIGHTS)[0]
            doc = rng.choice(docs)
            older = [v for v in history[doc] if v < top[doc]]
            if kind == "upsert_skipping_a_version":
                late.append(new_upsert(doc, top[doc] + 1))
                batch.append(new_upsert(doc, top[doc] + 1))
            elif kind == "late_older_version" and late:
                batch.append(late.pop(rng.randrange(len(late))))
            elif kind == "upsert_older_again" and older:
                batch.append(history[doc][rng.choice(older)])
            elif kind == "duplicate" and (batch or delivered):
                batch.append(rng.choice(batch or rng.choice(delivered)))
            elif kind == "delete":
                version = top[doc] if top[doc] and rng.random() < 0.6 else top[doc] + 1
                top[doc] = version
                batch.append(DocumentChange(doc, version, "delete"))
            elif kind == "delete_older" and top[doc] >= 2:
                batch.append(DocumentChange(doc, rng.randint(1, top[doc] - 1), "delete"))
            elif kind == "replay_earlier_batch" and delivered:
                batch.extend(rng.choice(delivered))
            else:
                kind = "upsert_new"
                batch.append(new_upsert(doc, top[doc] + 1))
            sequence.kinds[kind] += 1
        rng.shuffle(batch)
        delivered.append(list(batch))
        sequence.runs.append([*_releases(rng, sequence), *_split(rng, batch, sequence)])
    return sequence


def _releases(rng: random.Random, sequence: GeneratedSequence) -> list[Release]:
    """Release actions before a run: sometimes none, sometimes several."""
    actions = []
    if rng.random() < 0.35:
        actions.append(Release("contract", rng.randrange(2), rng.randrange(2)))
    for name, chance in (("swap", 0.3), ("rollback", 0.15), ("retire", 0.15)):
        if rng.random() < chance:
            actions.append(Release(name, pick=rng.randrange(4)))
    sequence.kinds.update(f"release_{a.action}" for a in actions)
    return actions


def _split(
    rng: random.Random, batch: list[DocumentChange], sequence: GeneratedSequence
) -> list[Apply | Refresh | Release]:
    """One run: a shard run per shard with changes (sometimes two), runs of random shards
    with nothing new (a refresh: a version registered since is built)."""
    kinds = sequence.kinds
    per_shard: dict[int, list[DocumentChange]] = {}
    for change in batch:
        per_shard.setdefault(shard_of(change.doc_id), []).append(change)
    actions: list[Apply | Refresh | Release] = []
    for shard, changes in per_shard.items():
        if len(changes) > 1 and rng.random() < 0.3:
            cut = rng.randint(1, len(changes) - 1)
            actions += [Apply(shard, changes[:cut]), Apply(shard, changes[cut:])]
            kinds["split_within_a_shard"] += 1
        else:
            actions.append(Apply(shard, changes))
    if len(per_shard) > 1:
        kinds["spread_over_shards"] += 1
    refreshed = [shard for shard in sequence.shards if rng.random() < 0.5]
    kinds["shard_run_without_changes"] += len(refreshed)
    actions += [Refresh(shard) for shard in refreshed]
    rng.shuffle(actions)
    return actions


# --- the reference model -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredDocument:
    version: int
    deleted: bool
    change: DocumentChange


@dataclass
class ReferenceModel:
    """The version rules of the module docstring, over plain dictionaries, for every index
    version: which document version each holds, and which texts each model has embedded."""

    documents: dict[str, StoredDocument] = field(default_factory=dict)
    specs: dict[str, tuple[ChunkingSpec, EmbeddingSpec]] = field(default_factory=dict)
    maintained: list[str] = field(default_factory=list)  # in registration order
    indexed: dict[str, dict[str, int]] = field(default_factory=dict)
    embedded_texts: dict[str, set[str]] = field(default_factory=dict)
    live_version: str | None = None
    replaced: dict[str, str] = field(default_factory=dict)  # version -> the one it replaced

    def apply(self, changes: list[DocumentChange]) -> dict[str, int]:
        winners: dict[str, DocumentChange] = {}
        for change in changes:
            current = winners.get(change.doc_id)
            rank = (change.version, change.op == "delete")
            if current is None or rank > (current.version, current.op == "delete"):
                winners[change.doc_id] = change
        counts = {"changed": 0, "deleted": 0, "stale": len(changes) - len(winners)}
        for change in winners.values():
            stored = self.documents.get(change.doc_id)
            if change.op == "upsert":
                applies = stored is None or change.version > stored.version
            else:
                applies = (
                    stored is None
                    or change.version > stored.version
                    or (change.version == stored.version and not stored.deleted)
                )
            if not applies:
                counts["stale"] += 1
                continue
            deleted = change.op == "delete"
            self.documents[change.doc_id] = StoredDocument(change.version, deleted, change)
            if deleted:
                counts["deleted"] += int(stored is not None and not stored.deleted)
                for indexed in self.indexed.values():  # retired versions' tables too
                    indexed.pop(change.doc_id, None)
            else:
                counts["changed"] += 1
        return counts

    def register(self, version_id: str, chunking: ChunkingSpec, embedding: EmbeddingSpec) -> None:
        """A refresh registers the contract's version, or brings a retired one back."""
        if version_id not in self.specs:
            self.specs[version_id] = (chunking, embedding)
            self.indexed[version_id] = {}
        if version_id not in self.maintained:
            self.maintained.append(version_id)
            self.maintained.sort(key=list(self.specs).index)
        if self.live_version is None:
            self.live_version = version_id

    def rollback_target(self) -> str | None:
        target = self.replaced.get(self.live_version or "")
        return target if target in self.maintained else None

    def release(self, action: str, version_id: str | None) -> bool:
        """Apply a release action; whether the registry must accept it."""
        if action == "rollback":
            version_id = self.rollback_target()
            if version_id is None:
                return False
        elif version_id is None or version_id == self.live_version:
            return False
        if action == "retire":
            if version_id == self.rollback_target():
                return False
            self.maintained.remove(version_id)
            return True
        assert self.live_version is not None
        self.replaced[version_id] = self.live_version
        self.live_version = version_id
        return True

    def live(self) -> dict[str, StoredDocument]:
        return {doc: stored for doc, stored in self.documents.items() if not stored.deleted}

    def refresh(self, shard: int) -> dict[str, int]:
        totals = {"texts_embedded": 0, "documents_indexed": 0}
        for version_id in self.maintained:
            chunking, embedding = self.specs[version_id]
            indexed = self.indexed[version_id]
            pending = [
                (doc, stored)
                for doc, stored in self.live().items()
                if shard_of(doc) == shard and indexed.get(doc) != stored.version
            ]
            texts = {
                text for _, stored in pending for text in _chunk_texts(chunking, stored.change)
            }
            seen = self.embedded_texts.setdefault(embedding.model_id, set())
            totals["texts_embedded"] += len(texts - seen)
            seen |= texts
            for doc, stored in pending:
                indexed[doc] = stored.version
            totals["documents_indexed"] += len(pending)
        return totals


def _chunk_texts(chunking: ChunkingSpec, change: DocumentChange) -> list[str]:
    return [chunk.text for chunk in chunk_document(chunking, change.title, change.content)]


# --- running a sequence against the store ------------------------------------------------------


def run_sequence(engine: Engine, sequence: GeneratedSequence) -> list[str]:
    """Divergences between the store and the model, and between every maintained version and
    a fresh build with its spec."""
    name = f"diff_{sequence.seed:04d}"
    source = QueuedChanges()
    contract = _contract(name, source)
    embedders: dict[str, HashingEmbedder] = {}

    def embedder_for(spec: EmbeddingSpec) -> HashingEmbedder:
        if spec.model_id not in embedders:
            embedders[spec.model_id] = HashingEmbedder(
                f"test-double:{name}:{spec.model_id}", DIMENSIONS
            )
        return embedders[spec.model_id]

    model = ReferenceModel()
    divergences: list[str] = []

    def check(where: str, expected: Mapping[str, object], actual: Mapping[str, object]) -> None:
        if expected != actual:
            divergences.append(f"seed {sequence.seed} {where}: model {expected}, store {actual}")

    deps = SyncDeps(SourceContext(engine, Settings.from_env()), embedder_for)

    def shard_run(where: str, shard: int, changes: list[DocumentChange]) -> None:
        """A shard run of `changes` (none: a refresh), checked against the model."""
        source.queue(shard, changes)
        result = sync_shard(contract, shard, deps)
        applied = {
            "changed": result.chunks.documents_changed,
            "deleted": result.chunks.documents_deleted,
            "stale": result.chunks.stale_changes_ignored,
        }
        check(where, model.apply(changes), applied)
        model.register(index_version_id(contract), contract.chunking, contract.embedding)
        assert result.index is not None, "the quality gate held the index back"
        indexed = {
            "texts_embedded": result.index.texts_embedded,
            "documents_indexed": result.index.documents_indexed,
        }
        check(where, model.refresh(shard), indexed)

    def release(where: str, action: Release) -> None:
        nonlocal contract
        if action.action == "contract":
            contract = _contract(name, source, CHUNKERS[action.chunker], MODELS[action.model])
            return
        chosen = model.maintained[action.pick % len(model.maintained)] if model.maintained else None
        accepted = model.release(action.action, chosen)
        try:
            if action.action == "swap":
                swap(engine, name, chosen or "", actor="test", force=True, reason="test")
            elif action.action == "rollback":
                rollback(engine, name, actor="test")
            else:
                retire(engine, name, chosen or "", actor="test")
            done = True
        except ReleaseError:
            done = False
        check(where, {"accepted": accepted}, {"accepted": done})

    for number, run in enumerate(sequence.runs):
        for action in run:
            where = f"run {number} {type(action).__name__.lower()} shard {action.shard}"
            if isinstance(action, Release):
                release(f"run {number} {action.action}", action)
            elif isinstance(action, Refresh):
                shard_run(where, action.shard, [])
            else:
                shard_run(where, action.shard, action.changes)
        tombstoned = [doc for doc, stored in model.documents.items() if stored.deleted]
        with engine.connect() as conn:
            tables = [_index_table_of(v) for v in product_versions(conn, name)]
        for table in tables:
            rows = _rows_of(engine, table, tombstoned)
            check(f"run {number} rows of deleted documents in {table.name}", {}, rows)
    for shard in sequence.shards:
        shard_run(f"final refresh shard {shard}", shard, [])

    check("document state", _model_state(model), _stored_state(engine, name))
    stored_versions = maintained_versions(engine, name)
    live = next((v.id for v in stored_versions if v.status == "live"), None)
    check(
        "versions",
        {"maintained": model.maintained, "live": model.live_version},
        {"maintained": [v.id for v in stored_versions], "live": live},
    )
    for number, version in enumerate(maintained_versions(engine, name)):
        health = index_health(engine, name, version=version)
        if health is None or not health.consistent:
            divergences.append(f"seed {sequence.seed}: {version.id} health {health}")
        try:
            scratch = _build_from_scratch(
                engine,
                model,
                f"{name}_scratch{number}",
                version.chunking_spec,
                version.embedding_spec,
            )
            assert_same_index(index_rows(engine, name, version.id), scratch)
        except AssertionError as exc:
            divergences.append(
                f"seed {sequence.seed}: {version.id} differs from a build from scratch: {exc}"
            )
    return divergences


def _index_table_of(version: IndexVersion) -> Table:
    return index_table(version.table_name, version.dimensions, version.distance)


def _rows_of(engine: Engine, table: Table, doc_ids: list[str]) -> dict[str, int]:
    query = (
        select(table.c.doc_id, func.count())
        .where(table.c.doc_id.in_(doc_ids))
        .group_by(table.c.doc_id)
    )
    with engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(query)}


def _model_state(model: ReferenceModel) -> dict[str, tuple[int, bool]]:
    return {doc: (stored.version, stored.deleted) for doc, stored in model.documents.items()}


def _stored_state(engine: Engine, product: str) -> dict[str, tuple[int, bool]]:
    query = select(DocumentState.doc_id, DocumentState.version, DocumentState.deleted).where(
        DocumentState.product == product
    )
    with engine.connect() as conn:
        return {row.doc_id: (row.version, row.deleted) for row in conn.execute(query)}


def _build_from_scratch(
    engine: Engine,
    model: ReferenceModel,
    product: str,
    chunking: ChunkingSpec,
    embedding: EmbeddingSpec,
) -> IndexSnapshot:
    """The fold's live documents, once each, into a fresh product with an empty cache."""
    source = QueuedChanges()
    contract = _contract(product, source, chunking, embedding)
    embedder = HashingEmbedder(f"test-double:hashing:{contract.name}:scratch", DIMENSIONS)
    deps = SyncDeps(SourceContext(engine, Settings.from_env()), embedder)
    ensure_index_version(engine, contract)
    live = [stored.change for stored in model.live().values()]
    for shard in sorted({shard_of(change.doc_id) for change in live}):
        source.queue(shard, [change for change in live if shard_of(change.doc_id) == shard])
        sync_shard(contract, shard, deps)
    return index_rows(engine, contract.name)


# --- the tests ---------------------------------------------------------------------------------


def test_generated_sequences_exercise_every_kind_of_change_in_every_shard() -> None:
    kinds: Counter[str] = Counter()
    for seed in range(SEQUENCES):
        kinds.update(generate(seed).kinds)
    assert sorted(Counter(shard_of(doc) for doc in DOCUMENT_POOL).items()) == [
        (shard, 2) for shard in SHARDS
    ]
    assert set(KINDS) <= set(kinds)
    assert min(kinds.values()) >= 30, kinds


def _divergences(engine: Engine, seed: int) -> list[str]:
    try:
        return run_sequence(engine, generate(seed))
    except Exception as exc:  # reported with its seed, with the other sequences' outcomes
        return [f"seed {seed}: {type(exc).__name__}: {exc}"]


def test_incremental_runs_never_diverge_from_a_build_from_scratch(engine: Engine) -> None:
    # Sequences use products and cache namespaces of their own, so they can run side by side.
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = pool.map(lambda seed: _divergences(engine, seed), range(SEQUENCES))
        divergences = [divergence for outcome in outcomes for divergence in outcome]
    assert divergences == []
