"""A folder of markdown or text documents: new, changed (checksum) and removed files."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.documents import (
    DocumentChange,
    KnownDocument,
    RecordError,
    quarantine_entry,
    upsert_from_record,
)


def file_id(root: Path, path: Path) -> str:
    """A file's document id: its path relative to the folder, with its extension, in POSIX form
    (`git/README.Debian`). Unique per file, and stable when other files come and go.

    Every reader of a folder (the source, its observer) derives a file's id here and only here.
    """
    return path.relative_to(root).as_posix()


def source_files(contract: DataProductContract) -> tuple[Path, Iterator[Path]]:
    """The product's folder and, in a stable order, the regular files its pattern matches
    (a pattern like `**/*` matches folders too: they are not documents)."""
    root = contract.resolve_path(contract.source.path or ".")
    if not root.is_dir():
        raise FileNotFoundError(f"product {contract.name}: source folder {root} does not exist")
    return root, (path for path in sorted(root.rglob(contract.source.pattern)) if path.is_file())


def file_record(root: Path, path: Path) -> dict[str, Any]:
    """A file as a record: path (the id), title, body, modified_at and its front-matter keys.

    The title is the front matter's `title`, else the first `# ` heading, else the file's id
    (its relative path: a folder of READMEs does not make every document "README").
    """
    text = path.read_text(encoding="utf-8")
    front: dict[str, Any] = {}
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end == -1:
            raise RecordError("front_matter", "front matter opened with '---' is never closed")
        try:
            loaded = yaml.safe_load(text[4:end])
        except yaml.YAMLError as exc:
            raise RecordError("front_matter", f"not valid YAML: {exc}") from exc
        front = loaded if isinstance(loaded, dict) else {}
        text = text[end + 4 :].lstrip("\n")
    doc_id = file_id(root, path)
    title = front.get("title") or next(
        (line[2:].strip() for line in text.splitlines() if line.startswith("# ")), doc_id
    )
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    record = {k: (str(v) if not isinstance(v, str | int | float) else v) for k, v in front.items()}
    record.update(
        path=doc_id,
        title=str(title),
        body=text,
        modified_at=modified.isoformat(),
        revision=0,
    )
    return record


def read_files(
    contract: DataProductContract, shard: int, known: Mapping[str, KnownDocument]
) -> SourceRead:
    """Files have no version of their own: a changed checksum bumps the stored version by one."""
    root, paths = source_files(contract)
    result = SourceRead()
    seen: set[str] = set()
    for path in paths:
        doc_id = file_id(root, path)
        if contract.shard_of(doc_id) != shard:
            continue
        seen.add(doc_id)
        try:
            change = upsert_from_record(contract, file_record(root, path))
        except Exception as exc:  # noqa: BLE001 - whatever a file holds, it is quarantined
            entry = quarantine_entry(contract, str(path), doc_id, exc, None)
            result.quarantined.append(replace(entry, doc_id=doc_id))
            continue
        previous = known.get(doc_id)
        if previous and not previous.deleted and previous.checksum == change.checksum:
            result.unchanged += 1
            continue
        version = previous.version + 1 if previous else 1
        result.changes.append(
            replace(change, version=version, observed=True, source_ref=str(path), record_ref=doc_id)
        )
    for doc_id, previous in known.items():
        if doc_id not in seen and not previous.deleted:
            result.changes.append(DocumentChange(doc_id, previous.version, "delete", observed=True))
    return result


def preflight(contract: DataProductContract) -> None:
    """The folder exists and its pattern matches at least one file (raises what is wrong)."""
    root, paths = source_files(contract)
    if next(paths, None) is None:
        raise FileNotFoundError(f"no file in {root} matches {contract.source.pattern!r}")
