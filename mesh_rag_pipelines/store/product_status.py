"""Each product's freshness as last judged, kept where the retrieval service can read it: the
service runs as the serving role, which cannot read sources or document state, yet its catalog
says whether a product is in sync or what waits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert

from mesh_rag_pipelines.store.schema import ProductStatus


def record_status(
    engine: Engine,
    product: str,
    *,
    in_sync: bool,
    waiting_changes: int,
    unindexed_documents: int,
    oldest_change: datetime | None,
) -> None:
    values = {
        "in_sync": in_sync,
        "waiting_changes": waiting_changes,
        "unindexed_documents": unindexed_documents,
        "oldest_change": oldest_change,
        "judged_at": func.now(),
    }
    with engine.begin() as conn:
        conn.execute(
            insert(ProductStatus)
            .values(product=product, **values)
            .on_conflict_do_update(index_elements=[ProductStatus.product], set_=values)
        )


def product_statuses(engine: Engine, products: list[str]) -> dict[str, ProductStatus]:
    """The last judgment of each of `products` that has one (readable by the serving role)."""
    with engine.connect() as conn:
        rows = conn.execute(select(ProductStatus).where(ProductStatus.product.in_(products)))
        return {row.product: ProductStatus(**row._mapping) for row in rows}
