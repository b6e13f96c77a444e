"""Embedding models behind one interface: a model identity and a batch embed call."""

from mesh_rag_pipelines.embedding.embedder import Embedder, embedder_for, query_embedder_for

__all__ = ["Embedder", "embedder_for", "query_embedder_for"]
