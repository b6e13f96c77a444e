"""mesh-rag-pipelines: retrieval indexes kept as a correct, fresh, governed materialized view."""
