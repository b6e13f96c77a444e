"""`kind: pdf_files`: a folder of PDF documents, read with pypdf (pure Python, maintained, no
native dependency; text extraction only, no OCR).

A PDF becomes the same record a text file does (see `files.file_record`), its body written as
markdown so that the chunker keeps its structure: each page is a `Page N` section, nested under
the PDF's outline (bookmarks) where it has one, so a chunk says `Safety > Page 3`. A PDF that
cannot be read (damaged, encrypted, no text layer) is quarantined alone, naming the file.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from mesh_rag_pipelines.sources.documents import RecordError
from mesh_rag_pipelines.sources.files import FilesSource, file_id

if TYPE_CHECKING:
    from pypdf import PdfReader

# Markdown's deepest heading: pages nest under every outline level above them.
_PAGE_LEVEL = 6
_LOOKS_LIKE_HEADING = re.compile(r"^#{1,6}\s")
# pypdf logs what it repairs in a damaged file; what it cannot repair is the quarantine reason.
logging.getLogger("pypdf").setLevel(logging.ERROR)


class PdfFilesSource(FilesSource):
    """`kind: pdf_files`: a folder (relative to the contract's file) and a glob pattern."""

    kind: Literal["pdf_files"] = "pdf_files"  # type: ignore[assignment]
    pattern: str = "*.pdf"

    dagster_kind: ClassVar[str] = "pdf"

    @property
    def record_fields(self) -> tuple[str, ...]:
        return ("pages",)

    def file_record(self, root: Path, path: Path) -> dict[str, Any]:
        return pdf_record(root, path)


def pdf_record(root: Path, path: Path) -> dict[str, Any]:
    """A PDF as a record: path (the id), title, body (markdown, a section per page), pages and
    modified_at. The title is the document's own (its metadata), else the first outline entry,
    else the file's id."""
    # Imported here: every command loads the contract model, few read a PDF.
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise RecordError("body", "the PDF is encrypted with a password")
        pages = [page.extract_text() or "" for page in reader.pages]
        outline = _outline_starts(reader)
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except RecordError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise RecordError("body", f"not a readable PDF: {type(exc).__name__}: {exc}") from exc
    if not any(text.strip() for text in pages):
        raise RecordError(
            "body", f"none of its {len(pages)} pages has a text layer (a scanned image?)"
        )
    doc_id = file_id(root, path)
    first_entry = next((title for entries in outline.values() for _, title in entries), "")
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    return {
        "path": doc_id,
        "title": meta_title.strip() or first_entry or doc_id,
        "body": _markdown(pages, outline),
        "pages": len(pages),
        "modified_at": modified.isoformat(),
        "revision": 0,
    }


def _outline_starts(reader: PdfReader) -> dict[int, list[tuple[int, str]]]:
    """Page index -> the outline entries (depth, title) that start on it, in outline order."""
    starts: dict[int, list[tuple[int, str]]] = {}

    def walk(items: list[Any], depth: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
                continue
            page = reader.get_destination_page_number(item)
            title = " ".join(str(item.title or "").split())
            if page is not None and page >= 0 and title:
                starts.setdefault(page, []).append((depth, title))

    walk(reader.outline, 1)
    return starts


def _markdown(pages: list[str], outline: dict[int, list[tuple[int, str]]]) -> str:
    """The pages as markdown: outline headings where their entries start, then `Page N`."""
    parts: list[str] = []
    for number, text in enumerate(pages):
        for depth, title in outline.get(number, []):
            parts.append(f"{'#' * min(depth, _PAGE_LEVEL - 1)} {title}\n")
        parts.append(f"{'#' * _PAGE_LEVEL} Page {number + 1}\n")
        # A page line that reads like a heading stays text: a leading space keeps it one.
        lines = (
            f" {line}" if _LOOKS_LIKE_HEADING.match(line) else line for line in text.splitlines()
        )
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)
