"""A `files` product over a real folder, as a user builds it with `mesh-rag build`: about 300
text files from /usr/share/doc (READMEs, changelogs, copyright files), several of them named
alike but for their extension (`git/README.md`, `git/README.Debian`, `git/README.source`).
Every file is a document of its own, no directory is quarantined, an untitled file is titled
by its path, and a second build with nothing changed on disk changes and embeds nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract, load_contract
from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR, contract_text, find_contract
from mesh_rag_pipelines.sources.base import ShardState
from mesh_rag_pipelines.sources.files import file_record
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import grant, source_ctx
from mesh_rag_pipelines_tests.real_docs import copy_real_folder

MESH_RAG = str(Path(sys.executable).parent / "mesh-rag")
PRODUCT = "system_docs"
WANTED = 300
MINIMUM_REAL = 150


def _contract_file(contracts_dir: Path, folder: Path) -> Path:
    """A plain `files` contract over `folder` with `pattern: "**/*"`, from the shipped one, and
    the platform policy granting it that folder."""
    raw = yaml.safe_load(contract_text(find_contract(PRODUCTS_DIR, "hr_policies")))
    raw.update(
        name=PRODUCT,
        domain="platform",
        description="The machine's package documentation: READMEs, changelogs, copyrights.",
        document_type="doc",
        source={"kind": "files", "path": str(folder), "pattern": "**/*"},
        retrieval={"max_age": "3650d", "allowed_document_types": ["doc"]},
        golden_queries=[],
    )
    raw["schema"]["metadata_fields"] = []
    contracts_dir.mkdir(exist_ok=True)
    path = contracts_dir / f"{PRODUCT}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    grant(contracts_dir, "platform", folders=[str(folder)])
    return path


def _mesh_rag(*args: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [MESH_RAG, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _documents(engine: Engine) -> dict[str, tuple[int, str, str | None, bool]]:
    """doc id -> (version, checksum, title, deleted) of the product's document state."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT doc_id, version, checksum, title, deleted FROM {SCHEMA}.document_state "
                "WHERE product = :p"
            ),
            {"p": PRODUCT},
        )
        return {r.doc_id: (r.version, r.checksum, r.title, r.deleted) for r in rows}


def _quarantined(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT record_ref, reason FROM {SCHEMA}.quarantine WHERE product = :p"),
            {"p": PRODUCT},
        )
        return [(r.record_ref, r.reason) for r in rows]


def _runs(home: Path, step: str) -> list[dict[str, object]]:
    """The metadata of every materialization of `step`, oldest first."""
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        records = instance.fetch_materializations(dg.AssetKey([PRODUCT, step]), limit=100).records
        return [
            {key: value.value for key, value in record.asset_materialization.metadata.items()}  # type: ignore[union-attr]
            for record in sorted(records, key=lambda record: record.storage_id)
        ]


def _untitled(folder: Path, relative: str) -> bool:
    content = (folder / relative).read_text()
    return not any(line.startswith("# ") for line in content.splitlines())


def test_a_real_folder_builds_one_document_per_file_and_a_second_build_changes_nothing(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    files = copy_real_folder(folder, WANTED, MINIMUM_REAL)
    stems = {(Path(f).parent, Path(f).name.split(".", 1)[0]) for f in files}
    assert len(files) >= MINIMUM_REAL and len(stems) <= len(files) - 10  # names that collide
    contracts_dir = tmp_path / "contracts"
    _contract_file(contracts_dir, folder)
    home = tmp_path / "home"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DAGSTER_HOME", "MESH_RAG_HOME", "MESH_RAG_S3_ENDPOINT_URL")
    }
    env.update(
        MESH_RAG_PROFILE="local",
        MESH_RAG_HOME=str(home),
        MESH_RAG_DATABASE_URL=database_url,
        MESH_RAG_CONTRACTS_DIR=str(contracts_dir),
    )

    first = _mesh_rag("build", "--product", PRODUCT, env=env, cwd=tmp_path)
    assert f"{PRODUCT}: index matches its source: {len(files)} documents" in first, first
    documents = _documents(engine)
    assert sorted(documents) == files  # one document per file, its id its relative path
    assert not any(deleted for *_, deleted in documents.values())
    assert _quarantined(engine) == []
    health = index_health(engine, PRODUCT)
    assert health is not None and health.consistent
    assert (health.live_documents, health.missing_documents, health.ghost_rows) == (
        len(files),
        0,
        0,
    )
    untitled = [f for f in files if _untitled(folder, f)]
    assert untitled and all(documents[f][2] == f for f in untitled)
    chunks_runs = _runs(home, "chunks")
    assert sum(run["documents_changed"] for run in chunks_runs) == len(files)  # type: ignore[misc]
    assert sum(run["quarantined"] for run in chunks_runs) == 0  # type: ignore[misc]

    second = _mesh_rag("build", "--product", PRODUCT, env=env, cwd=tmp_path)
    assert f"{PRODUCT}: index matches its source: {len(files)} documents" in second, second
    assert _documents(engine) == documents  # no version bumped, no checksum changed
    assert _quarantined(engine) == []
    chunks_runs, embeddings_runs = _runs(home, "chunks"), _runs(home, "embeddings")
    assert len(chunks_runs) == len(embeddings_runs) == 8
    assert [
        (run["documents_changed"], run["documents_deleted"], run["quarantined"])
        for run in chunks_runs[4:]
    ] == [(0, 0, 0)] * 4
    assert sum(run["documents_unchanged"] for run in chunks_runs[4:]) == len(files)  # type: ignore[misc]
    assert [
        (run["documents_indexed"], run["texts_embedded"], run["model_loaded"])
        for run in embeddings_runs[4:]
    ] == [(0, 0, False)] * 4


def _folder_contract(tmp_path: Path, folder: Path) -> DataProductContract:
    return load_contract(_contract_file(tmp_path / "contracts", folder))


def test_a_recursive_pattern_yields_files_only_each_under_its_own_id(
    tmp_path: Path, engine: Engine
) -> None:
    folder = tmp_path / "docs"
    for relative, content in {
        "git/README.md": "# Git\n\nThe fast version control system.\n",
        "git/README.Debian": "Git for Debian: notes on packaging.\n",
        "git/README.source": "The source package is built from upstream tarballs.\n",
        "git/contrib/hooks/README": "Sample hooks.\n",
        "empty-dir/nested/README": "A file deep in nested folders.\n",
        "copyright": "Copyright 2024 Northwind.\n",
    }.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(content)
    (folder / "a-directory-only").mkdir()
    (folder / "looks-like-a-file.md").mkdir()
    contract = _folder_contract(tmp_path, folder)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    ctx = source_ctx(engine)
    reads = [
        contract.source.read(contract, shard, ShardState(), ctx) for shard in range(contract.shards)
    ]
    assert [q for read in reads for q in read.quarantined] == []
    changes = {c.doc_id: c for read in reads for c in read.changes}
    assert sorted(changes) == files
    assert all(c.op == "upsert" and c.version == 1 for c in changes.values())
    assert changes["git/README.md"].title == "Git"
    assert changes["git/README.Debian"].title == "git/README.Debian"
    assert changes["copyright"].title == "copyright"
    assert file_record(folder, folder / "git/README.source")["path"] == "git/README.source"

    observed = contract.source.observe(contract, ctx, {})
    assert sum(version.records for version in observed.values()) == len(files)
    for shard, version in observed.items():
        assert version.records == sum(1 for f in files if contract.shard_of(f) == shard)
