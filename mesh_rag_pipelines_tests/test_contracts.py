"""Contracts load into typed models; an invalid one fails naming the file and the field."""

from pathlib import Path

import pytest
import yaml

from mesh_rag_pipelines.contracts import ContractError, load_contract, load_contracts
from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR


def _write_variant(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    raw = yaml.safe_load((PRODUCTS_DIR / "hr_policies.yaml").read_text())
    edit(raw)
    path = tmp_path / "hr_policies.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_products_cover_three_source_kinds_and_two_domains() -> None:
    contracts = load_contracts()
    assert {c.source.kind for c in contracts} == {"postgres_table", "files", "s3_landing"}
    assert len({c.domain for c in contracts}) >= 2
    assert all(c.golden_queries for c in contracts)


def test_missing_field_names_file_and_field(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda raw: raw.pop("owner"))
    with pytest.raises(ContractError) as error:
        load_contract(path)
    assert error.value.path == path
    assert error.value.field == "owner"
    assert str(error.value) == f"{path}: field 'owner': missing required field"


def test_unknown_source_kind_names_the_field(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda raw: raw["source"].update(kind="ftp"))
    with pytest.raises(ContractError) as error:
        load_contract(path)
    assert error.value.field == "source.kind"
    assert "'postgres_table', 'files' or 's3_landing'" in error.value.problem


def test_bad_sla_names_the_field_and_the_expected_form(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda raw: raw["freshness"].update(sla="soon"))
    with pytest.raises(ContractError) as error:
        load_contract(path)
    assert error.value.field == "freshness.sla"
    assert error.value.problem == "'soon' is not a positive duration like '30m', '2h' or '7d'"


def test_source_kind_requires_its_own_fields(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda raw: raw["source"].pop("path"))
    with pytest.raises(ContractError) as error:
        load_contract(path)
    assert "requires field 'source.path'" in error.value.problem


def test_pii_field_may_not_be_indexed(tmp_path: Path) -> None:
    def leak(raw: dict) -> None:
        raw["pii_fields"] = ["policy_owner"]

    with pytest.raises(ContractError) as error:
        load_contract(_write_variant(tmp_path, leak))
    assert "PII fields ['policy_owner'] must not be" in error.value.problem


def test_misspelled_field_is_rejected(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda raw: raw.update(ownr="team:x"))
    with pytest.raises(ContractError) as error:
        load_contract(path)
    assert error.value.field == "ownr"
    assert "unknown field" in error.value.problem
