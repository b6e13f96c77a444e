"""Contracts load into typed models; an invalid one fails naming the file and the field."""

from pathlib import Path

import pytest
import yaml

from mesh_rag_pipelines.contracts import (
    ContractError,
    ContractErrors,
    load_contract,
    load_contracts,
)
from mesh_rag_pipelines_tests.helpers import grant, shipped_contract


def _shipped(tmp_path: Path) -> dict:
    return yaml.safe_load(shipped_contract("hr_policies", tmp_path / "sample_data"))


def _write_variant(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    raw = _shipped(tmp_path)
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
    assert "'postgres_table', 'files', 'pdf_files' or 's3_landing'" in error.value.problem


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


# --- contracts that must not load (each names its file and field) ------------------------------


def _problem(tmp_path: Path, edit) -> ContractError:  # type: ignore[no-untyped-def]
    path = _write_variant(tmp_path, edit)
    with pytest.raises(ContractError) as error:
        load_contract(path)
    assert error.value.path == path
    return error.value


def test_an_impossible_cron_expression_is_rejected(tmp_path: Path) -> None:
    error = _problem(tmp_path, lambda raw: raw["freshness"].update(poll_cron="99 99 99 99 99"))
    assert error.field == "freshness.poll_cron"
    assert "'99 99 99 99 99' is not a valid cron expression" in error.problem


def test_dimensions_must_match_the_local_model(tmp_path: Path) -> None:
    error = _problem(tmp_path, lambda raw: raw["embedding"].update(dimensions=768))
    assert error.field == "embedding.dimensions"
    assert error.problem == "local model 'all-MiniLM-L6-v2' has 384 dimensions, not 768"


def test_an_unknown_local_model_is_rejected(tmp_path: Path) -> None:
    error = _problem(tmp_path, lambda raw: raw["embedding"].update(model="all-mpnet-base-v2"))
    assert error.field == "embedding.model"
    assert "'all-mpnet-base-v2' is not a local model; installed: ['all-MiniLM-L6-v2']" in (
        error.problem
    )


@pytest.mark.parametrize("overlap", [180, 200, 91])
def test_overlap_must_be_at_most_half_the_chunk(tmp_path: Path, overlap: int) -> None:
    error = _problem(tmp_path, lambda raw: raw["chunking"].update(overlap_words=overlap))
    assert error.field == "chunking.overlap_words"
    assert error.problem == f"overlap_words ({overlap}) must be at most half of max_words (180)"


@pytest.mark.parametrize("score", [float("nan"), float("inf")])
def test_min_score_must_be_a_finite_number(tmp_path: Path, score: float) -> None:
    error = _problem(tmp_path, lambda raw: raw["retrieval"].update(min_score=score))
    assert error.field == "retrieval.min_score"


def test_the_id_field_cannot_be_pii(tmp_path: Path) -> None:
    error = _problem(tmp_path, lambda raw: raw.update(pii_fields=["path"]))
    assert error.field == "pii_fields"
    assert "'path' is the id field" in error.problem


def test_a_huge_duration_names_its_field(tmp_path: Path) -> None:
    error = _problem(tmp_path, lambda raw: raw["freshness"].update(sla="9999999999d"))
    assert error.field == "freshness.sla"
    assert error.problem == "'9999999999d' is too long; the longest accepted duration is 36500d"


def test_yml_files_are_contracts_too(tmp_path: Path) -> None:
    raw = _shipped(tmp_path)
    (tmp_path / "hr_policies.yml").write_text(yaml.safe_dump(raw))
    grant(tmp_path, "people", folders=[str(tmp_path / "sample_data")])
    assert [c.name for c in load_contracts(tmp_path)] == ["hr_policies"]


def test_every_bad_contract_is_reported_at_once(tmp_path: Path) -> None:
    for name, edit in {
        "hr_policies": lambda raw: raw.pop("owner"),
        "travel": lambda raw: raw["chunking"].update(overlap_words=500),
        "leave": lambda raw: raw["freshness"].update(sla="soon", poll_cron="* *"),
    }.items():
        raw = yaml.safe_load(shipped_contract("hr_policies", tmp_path / f"data_{name}"))
        raw["name"] = name
        edit(raw)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ContractErrors) as error:
        load_contracts(tmp_path)
    assert sorted((e.path.name, e.field) for e in error.value.errors) == [
        ("hr_policies.yaml", "owner"),
        ("leave.yaml", "freshness.poll_cron"),
        ("leave.yaml", "freshness.sla"),
        ("travel.yaml", "chunking.overlap_words"),
    ]
    assert str(error.value).count("\n") == 4  # a headline and one line per problem
