"""Source kinds: one module per kind, each a class that owns how its source is read, observed,
re-driven, seeded, described, triggered, checked and governed (see base.py). A contract's
`source:` is one of them, told apart by `kind`; adding a kind is a module and a line here."""

from typing import Annotated

from pydantic import Field

from mesh_rag_pipelines.sources.base import SourceKind
from mesh_rag_pipelines.sources.files import FilesSource
from mesh_rag_pipelines.sources.pdf import PdfFilesSource
from mesh_rag_pipelines.sources.postgres_table import PostgresTableSource
from mesh_rag_pipelines.sources.s3_landing import S3LandingSource

KINDS = (PostgresTableSource, FilesSource, PdfFilesSource, S3LandingSource)
SourceSpec = Annotated[
    PostgresTableSource | FilesSource | PdfFilesSource | S3LandingSource,
    Field(discriminator="kind"),
]
# The names a contract's `source.kind` may take.
SOURCE_KINDS = tuple(kind.model_fields["kind"].default for kind in KINDS)

__all__ = ["SOURCE_KINDS", "SourceKind", "SourceSpec"]
