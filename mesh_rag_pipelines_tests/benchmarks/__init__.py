"""Benchmarks and retrieval evaluation: `python -m mesh_rag_pipelines_tests.benchmarks <name>`.

Each benchmark starts its own embedded PostgreSQL in a temporary folder (or uses a fresh
database on MESH_RAG_DATABASE_URL), prints its figures, and merges them into
`mesh_rag_pipelines_tests/benchmarks/results.json`.
"""
