"""Alembic environment: runs on the connection `store.database.migrate` hands over."""

from alembic import context

from mesh_rag_pipelines.store.schema import SCHEMA, Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table_schema=SCHEMA,
    include_schemas=True,
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
