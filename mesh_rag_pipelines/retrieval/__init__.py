"""Query -> chunks from the live index versions, with provenance."""

from mesh_rag_pipelines.retrieval.search import RetrievedChunk, search

__all__ = ["RetrievedChunk", "search"]
