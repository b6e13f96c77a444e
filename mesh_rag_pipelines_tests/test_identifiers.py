"""Every identifier derived from a product's name fits in PostgreSQL's 63 characters: a name the
contract accepts builds end to end, and a longer one is refused at load, naming the limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import ContractErrors, load_contracts
from mesh_rag_pipelines.contracts.model import MAX_PRODUCT_NAME
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.index_versions import index_version_id
from mesh_rag_pipelines.store.schema import MAX_IDENTIFIER, derived_identifiers, index_table_name
from mesh_rag_pipelines_tests.helpers import build_all


def _renamed(products_dir: Path, name: str) -> Path:
    for path in products_dir.glob("*.yaml"):
        if path.stem not in ("hr_policies", "platform_policy"):
            path.unlink()
    source = products_dir / "hr_policies.yaml"
    target = products_dir / f"{name}.yaml"
    target.write_text(source.read_text().replace("name: hr_policies", f"name: {name}"))
    source.unlink()
    return target


def test_the_longest_accepted_name_fits_every_identifier(
    products_dir: Path,
    engine: Engine,
    access,
    minilm: Embedder,  # type: ignore[no-untyped-def]
) -> None:
    name = "p" + "x" * (MAX_PRODUCT_NAME - 1)
    _renamed(products_dir, name)
    (contract,) = load_contracts(products_dir)
    table = index_table_name(index_version_id(contract))
    assert max(len(identifier) for identifier in derived_identifiers(table)) == MAX_IDENTIFIER
    build_all({name: contract}, access, minilm)
    health = index_health(engine, name)
    assert health is not None and health.consistent and health.rows == health.expected_rows > 0
    with engine.connect() as conn:
        indexes = set(
            conn.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = :t"), {"t": table}
            ).scalars()
        )
    assert indexes == set(derived_identifiers(table)) - {table}


def test_a_longer_name_is_refused_at_load_naming_the_limit(products_dir: Path) -> None:
    name = "p" + "x" * MAX_PRODUCT_NAME
    path = _renamed(products_dir, name)
    with pytest.raises(ContractErrors) as raised:
        load_contracts(products_dir)
    (error,) = raised.value.errors
    assert (error.path, error.field) == (path, "name")
    assert f"more than {MAX_PRODUCT_NAME}" in error.problem and "63" in error.problem
