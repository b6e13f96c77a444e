"""A folder of documents: new, changed (checksum) and removed files. A file is a record (see
`file_record`); the `files` kind reads text (markdown, plain text), and kinds for other formats
subclass it with their own `file_record` (sources/pdf.py).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import yaml

from mesh_rag_pipelines.sources.base import (
    Refusal,
    ShardState,
    ShardVersion,
    SourceContext,
    SourceKind,
    VersionDigest,
)
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.documents import (
    DocumentChange,
    RecordError,
    quarantine_entry,
    upsert_from_record,
)

if TYPE_CHECKING:
    from mesh_rag_pipelines.contracts import DataProductContract
    from mesh_rag_pipelines.governance.policy import PlatformPolicy


def file_id(root: Path, path: Path) -> str:
    """A file's document id: its path relative to the folder, with its extension, in POSIX form
    (`git/README.Debian`). Unique per file, and stable when other files come and go.

    Every reader of a folder (the source, its observer) derives a file's id here and only here.
    """
    return path.relative_to(root).as_posix()


def source_files(contract: DataProductContract, pattern: str) -> tuple[Path, Iterator[Path]]:
    """The product's folder and, in a stable order, the regular files `pattern` matches
    (a pattern like `**/*` matches folders too: they are not documents)."""
    root = contract.resolve_path(contract.source.path or ".")  # type: ignore[union-attr]
    if not root.is_dir():
        raise FileNotFoundError(f"product {contract.name}: source folder {root} does not exist")
    return root, (path for path in sorted(root.rglob(pattern)) if path.is_file())


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


class FilesSource(SourceKind):
    """`kind: files`: a folder (relative to the contract's file) and a glob pattern."""

    kind: Literal["files"] = "files"
    path: str
    pattern: str = "*.md"

    dagster_kind: ClassVar[str] = "markdown"
    main_field: ClassVar[str] = "source.path"

    # The fields every file record has (see `file_record`), which the schema must map so.
    FILE_FIELDS: ClassVar[dict[str, str]] = {
        "id_field": "path",
        "version_field": "revision",
        "updated_at_field": "modified_at",
    }

    def schema_problem(self, schema: Any) -> tuple[str, str] | None:
        for name, field in self.FILE_FIELDS.items():
            if getattr(schema, name) != field:
                return (
                    name,
                    f"a {self.kind} source's records carry their {name.removesuffix('_field')} "
                    f"in '{field}': set schema.{name}: {field}",
                )
        return None

    def where(self, contract: DataProductContract) -> str:
        return f"folder {contract.resolve_path(self.path)}"

    def file_record(self, root: Path, path: Path) -> dict[str, Any]:
        """A file as a record; a kind for another file format overrides this."""
        return file_record(root, path)

    def files(self, contract: DataProductContract) -> tuple[Path, Iterator[Path]]:
        return source_files(contract, self.pattern)

    def read(
        self, contract: DataProductContract, shard: int, state: ShardState, ctx: SourceContext
    ) -> SourceRead:
        """Files have no version of their own: a changed checksum bumps the stored version."""
        root, paths = self.files(contract)
        result = SourceRead()
        seen: set[str] = set()
        known = state.known
        for path in paths:
            doc_id = file_id(root, path)
            if contract.shard_of(doc_id) != shard:
                continue
            seen.add(doc_id)
            try:
                change = upsert_from_record(contract, self.file_record(root, path))
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
                replace(
                    change, version=version, observed=True, source_ref=str(path), record_ref=doc_id
                )
            )
        for doc_id, previous in known.items():
            if doc_id not in seen and not previous.deleted:
                result.changes.append(
                    DocumentChange(doc_id, previous.version, "delete", observed=True)
                )
        return result

    def observe(
        self, contract: DataProductContract, ctx: SourceContext, states: Mapping[int, ShardState]
    ) -> dict[int, ShardVersion]:
        """File checksums per shard: reading identities, not text."""
        digests = {shard: VersionDigest() for shard in range(contract.shards)}
        root, paths = self.files(contract)
        for path in paths:
            doc_id = file_id(root, path)
            checksum = hashlib.sha256(path.read_bytes()).hexdigest()
            modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
            digests[contract.shard_of(doc_id)].add(f"{doc_id}\t{checksum}", modified)
        return {shard: digest.version() for shard, digest in digests.items()}

    def preflight(self, contract: DataProductContract, ctx: SourceContext) -> None:
        """The folder exists and the pattern matches at least one file."""
        root, paths = self.files(contract)
        if next(paths, None) is None:
            raise FileNotFoundError(f"no file in {root} matches {self.pattern!r}")

    def refusal(self, contract: DataProductContract, policy: PlatformPolicy) -> Refusal | None:
        folder = contract.resolve_path(self.path)
        roots = policy.folders(contract.domain)
        if not _inside(folder, roots):
            return (
                "source.path",
                f"{folder} is outside the folders {policy.label(contract.domain)} grants: "
                f"{[str(root) for root in roots]}",
            )
        if self.pattern.startswith("/") or ".." in PurePosixPath(self.pattern).parts:
            return (
                "source.pattern",
                f"{self.pattern!r} reaches outside the folder {folder}: a pattern may not start "
                "at / or hold '..'",
            )
        return None

    def refusal_at_run(
        self, contract: DataProductContract, policy: PlatformPolicy
    ) -> Refusal | None:
        """Every file the pattern matches lies in a granted folder once links are resolved."""
        roots = policy.folders(contract.domain)
        try:
            _, paths = self.files(contract)
        except FileNotFoundError:
            return None  # the read itself reports a missing folder
        for path in paths:
            real = Path(os.path.realpath(path))
            if not _inside(real, roots):
                return (
                    "source.path",
                    f"{path} is a link to {real}, outside the folders "
                    f"{policy.label(contract.domain)} grants: {[str(root) for root in roots]}",
                )
        return None


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)
