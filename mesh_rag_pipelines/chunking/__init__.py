"""Named, versioned chunkers: document -> chunks (text, number, section path, text hash)."""

from mesh_rag_pipelines.chunking.chunker import ChunkText, chunk_document, text_hash

__all__ = ["ChunkText", "chunk_document", "text_hash"]
