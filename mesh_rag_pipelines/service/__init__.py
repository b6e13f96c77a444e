"""The retrieval service: an authenticated HTTP API over the data products (see app.py)."""

from mesh_rag_pipelines.service.app import create_app

__all__ = ["create_app"]
