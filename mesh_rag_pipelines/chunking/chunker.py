"""Section-aware chunking of markdown and plain text.

`markdown_sections` follows the heading tree, packs whole paragraphs into chunks of at most
`max_words` words, splits longer paragraphs at sentence ends, and repeats the last
`overlap_words` words of a chunk at the start of the next one in the same section. Every chunk
starts with the document title and section path, so a chunk read alone still says what it is
about. The output depends only on (spec, title, content): the same input always gives the same
chunks, which is what makes incremental runs equal to full builds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from mesh_rag_pipelines.contracts import ChunkingSpec

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class ChunkText:
    chunk_no: int
    section: str
    text: str
    text_hash: str


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _sections(content: str, follow_headings: bool) -> list[tuple[str, list[str]]]:
    """(section path, paragraphs) in document order."""
    sections: list[tuple[str, list[str]]] = []
    path: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    current: list[str] = []

    def close_paragraph() -> None:
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    def close_section() -> None:
        close_paragraph()
        if paragraphs:
            sections.append((" > ".join(title for _, title in path), list(paragraphs)))
            paragraphs.clear()

    for line in content.splitlines():
        heading = _HEADING.match(line) if follow_headings else None
        if heading:
            close_section()
            level = len(heading.group(1))
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, heading.group(2))]
        elif line.strip():
            current.append(line.strip())
        else:
            close_paragraph()
    close_section()
    return sections


def _pieces(paragraph: str, max_words: int) -> list[list[str]]:
    """A paragraph as word lists of at most max_words, cut at sentence ends where possible."""
    words = paragraph.split()
    if len(words) <= max_words:
        return [words]
    pieces: list[list[str]] = []
    for sentence in _SENTENCE_END.split(paragraph):
        sentence_words = sentence.split()
        while len(sentence_words) > max_words:
            pieces.append(sentence_words[:max_words])
            sentence_words = sentence_words[max_words:]
        if sentence_words:
            pieces.append(sentence_words)
    return pieces


def chunk_document(spec: ChunkingSpec, title: str | None, content: str) -> list[ChunkText]:
    follow_headings = spec.name == "markdown_sections"
    budget = spec.max_words
    chunks: list[ChunkText] = []
    for section, paragraphs in _sections(content, follow_headings):
        # The document's H1 repeats the title; keep it out of the prefix.
        label = " > ".join(p for p in section.split(" > ") if p and p != title) if section else ""
        prefix = " | ".join(part for part in (title, label) if part)
        body: list[str] = []
        carried = 0
        for paragraph in paragraphs:
            for piece in _pieces(paragraph, budget):
                if body and len(body) + len(piece) > budget and len(body) > carried:
                    chunks.append(_make(len(chunks), section, prefix, body))
                    body = body[-spec.overlap_words :] if spec.overlap_words else []
                    carried = len(body)
                body = body + piece
        if len(body) > carried or (body and not chunks):
            chunks.append(_make(len(chunks), section, prefix, body))
    return chunks


def _make(chunk_no: int, section: str, prefix: str, words: list[str]) -> ChunkText:
    text = f"{prefix}\n\n{' '.join(words)}" if prefix else " ".join(words)
    return ChunkText(chunk_no, section, text, text_hash(text))
