"""Benchmarks and retrieval evaluation: `python -m benchmarks <name>`.

Each benchmark starts its own embedded PostgreSQL in a temporary folder (or uses a fresh
database on MESH_RAG_DATABASE_URL), prints its figures, and merges them into
`benchmarks/results.json`.
"""
