"""Query -> chunks from the live index versions, with provenance, as a caller may read them."""

from mesh_rag_pipelines.retrieval.search import OPERATOR, Caller, RetrievedChunk, search

__all__ = ["OPERATOR", "Caller", "RetrievedChunk", "search"]
