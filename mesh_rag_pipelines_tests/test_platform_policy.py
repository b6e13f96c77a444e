"""Federated governance: a contract reads only what the platform policy grants its domain.

Each reproduction is a contract that re-publishes data it does not own: the store's own
document state, another product's landing prefix, a folder of the machine. `mesh-rag check`
refuses each one (exit 1, naming the file, the field and the policy entry), and so does the read
itself when a contract reaches it without the loader, or after the platform revoked a grant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract, check_contracts, load_contract
from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR, domains
from mesh_rag_pipelines.governance.policy import POLICY_FILE, SourceNotGranted
from mesh_rag_pipelines.pipeline import read_source
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.conftest import MeshRag
from mesh_rag_pipelines_tests.helpers import grant, source_ctx
from mesh_rag_pipelines_tests.landing import land, project_event, ticket


def _write(products_dir: Path, base: str, name: str, edit: Any) -> Path:
    """A new contract `name` made from the product `base`'s, edited by `edit(raw)`."""
    raw = yaml.safe_load((products_dir / f"{base}.yaml").read_text())
    raw.update(name=name, acl_groups=["everyone"], golden_queries=[])
    edit(raw)
    path = products_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _refused_at_read(path: Path, access: SourceContext) -> SourceNotGranted:
    """The contract, loaded without the loader's policy check, refused by the read itself."""
    contract = load_contract(path)
    with pytest.raises(SourceNotGranted) as refused:
        read_source(contract, 0, access)
    return refused.value


def _line(error: SourceNotGranted) -> str:
    """What `mesh-rag check` prints after the file for the same refusal."""
    return f"field '{error.field}': {error.problem}"


def _changes(contract: DataProductContract, access: SourceContext) -> int:
    return sum(len(read_source(contract, s, access).changes) for s in range(contract.shards))


def _policy(products_dir: Path) -> Path:
    return products_dir / POLICY_FILE


def _store_mirror(raw: dict[str, Any]) -> None:
    raw["source"] = {"kind": "postgres_table", "table": f"{SCHEMA}.document_state"}
    raw["schema"] = {
        "id_field": "doc_id",
        "version_field": "version",
        "updated_at_field": "updated_at",
        "title_field": "title",
        "text_fields": ["content"],
    }
    raw["pii_fields"] = []


# --- the shipped samples --------------------------------------------------------------------------


def test_the_shipped_products_pass_under_their_shipped_policy() -> None:
    contracts, problems = check_contracts(PRODUCTS_DIR)
    assert problems == []
    assert [c.name for c in contracts] == ["catalog_products", "hr_policies", "support_tickets"]
    policy = yaml.safe_load((PRODUCTS_DIR / POLICY_FILE).read_text())
    assert policy == {
        "domains": {
            "commerce": {"databases": [{"tables": ["sample_sources.*"]}]},
            "customer_support": {
                "buckets": [{"bucket": "northwind-landing", "prefixes": ["support_tickets/"]}]
            },
            "people": {"folders": ["people"]},
        }
    }


def test_the_test_copy_of_the_products_passes_check(mesh_rag: MeshRag) -> None:
    checked = mesh_rag.run("check").stdout.splitlines()
    assert [line.split()[:2] for line in checked] == [
        ["ok", name] for name in ("catalog_products", "hr_policies", "support_tickets")
    ]


# --- reproduction 1: the store's own table ------------------------------------------------------


def test_the_store_s_own_table_is_refused_whatever_the_policy_says(
    mesh_rag: MeshRag, products_dir: Path, access: SourceContext, engine: Engine
) -> None:
    path = _write(products_dir, "catalog_products", "state_mirror", _store_mirror)
    # Even a platform team granting everything cannot open the store to a contract.
    grant(products_dir, "commerce", databases=[{"tables": ["*.*", f"{SCHEMA}.*"]}])

    checked = mesh_rag.run("check", ok=False)
    assert checked.returncode == 1
    expected = (
        f"INVALID {path}: field 'source.table': {SCHEMA}.document_state is the store's own "
        "table: no contract may read it"
    )
    assert expected in checked.stdout.splitlines(), checked.stdout
    assert "ok      catalog_products" in checked.stdout  # the others still load

    built = mesh_rag.run("build", "--product", "state_mirror", ok=False)
    assert built.returncode == 1
    assert f"{path}: field 'source.table'" in built.stderr
    assert "Traceback" not in built.stderr

    refused = _refused_at_read(path, access)
    assert (refused.field, str(path.resolve())) == ("source.table", refused.where)
    assert _line(refused) in checked.stdout
    with engine.connect() as conn:
        copied = conn.execute(
            text(f"SELECT count(*) FROM {SCHEMA}.document_state WHERE product = 'state_mirror'")
        ).scalar_one()
    assert copied == 0


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("pg_catalog.pg_authid", "pg_catalog.pg_authid is in PostgreSQL's system schema"),
        ("information_schema.tables", "is in PostgreSQL's system schema information_schema"),
        ("PG_TOAST.pg_toast_2619", "is in PostgreSQL's system schema PG_TOAST"),
        ("Mesh_Rag.chunk", "Mesh_Rag.chunk is the store's own table"),
        ("document_state", "'document_state' names no schema"),
    ],
)
def test_system_tables_and_unqualified_names_are_refused(
    products_dir: Path, table: str, problem: str
) -> None:
    def reads(raw: dict[str, Any]) -> None:
        _store_mirror(raw)
        raw["source"]["table"] = table

    path = _write(products_dir, "catalog_products", "system_reader", reads)
    grant(products_dir, "commerce", databases=[{"tables": ["*.*"]}])
    _, problems = check_contracts(products_dir)
    assert [(p.path, p.field) for p in problems] == [(path, "source.table")]
    assert problem in problems[0].problem


def test_a_table_or_database_the_policy_does_not_grant_is_refused(products_dir: Path) -> None:
    def other_schema(raw: dict[str, Any]) -> None:
        raw["source"]["table"] = "finance.salaries"

    def other_database(raw: dict[str, Any]) -> None:
        raw["source"]["database_url_env"] = "FINANCE_URL"

    schema_path = _write(products_dir, "catalog_products", "salaries", other_schema)
    database_path = _write(products_dir, "catalog_products", "finance_catalog", other_database)
    _, problems = check_contracts(products_dir)
    policy = _policy(products_dir)
    assert sorted((p.path.name, p.field, p.problem) for p in problems) == [
        (
            database_path.name,
            "source.database_url_env",
            f"the platform policy ({policy}, domain commerce) grants no table in database "
            "FINANCE_URL; it grants: ['the store database: sample_sources.*']",
        ),
        (
            schema_path.name,
            "source.table",
            f"finance.salaries is not among the tables the platform policy ({policy}, domain "
            "commerce) grants in the store database: ['the store database: sample_sources.*']",
        ),
    ]


# --- reproduction 2: another product's landing zone ----------------------------------------------


def _ticket_digest(bucket: str) -> Any:
    def edit(raw: dict[str, Any]) -> None:
        raw["domain"] = "people"
        raw["pii_fields"] = []
        raw["pii_masking"] = {}
        raw["schema"]["metadata_fields"] = ["status", "customer_email"]
        raw["source"].update(bucket=bucket, prefix="support_tickets/")

    return edit


def test_another_domain_s_landing_zone_is_refused(
    mesh_rag: MeshRag,
    products_dir: Path,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    s3: Any,
) -> None:
    tickets = contracts["support_tickets"]
    bucket = tickets.source.bucket or ""
    land(s3, tickets, "0001.jsonl", [project_event("upsert", ticket("T-1", 1, "Tent", "Torn."))])
    path = _write(products_dir, "support_tickets", "ticket_digest", _ticket_digest(bucket))

    checked = mesh_rag.run("check", ok=False)
    assert checked.returncode == 1
    expected = (
        f"INVALID {path}: field 'source.bucket': bucket {bucket} is not one the platform policy "
        f"({_policy(products_dir)}, domain people) grants: []"
    )
    assert expected in checked.stdout.splitlines(), checked.stdout
    assert "ok      support_tickets" in checked.stdout

    refused = _refused_at_read(path, access)
    assert refused.field == "source.bucket"
    assert _line(refused) in checked.stdout


@pytest.mark.parametrize("prefix", ["support_tickets/", "support_tickets/2026/", "support"])
def test_overlapping_landing_prefixes_are_both_refused_naming_both_files(
    mesh_rag: MeshRag, products_dir: Path, prefix: str
) -> None:
    original = products_dir / "support_tickets.yaml"
    bucket = yaml.safe_load(original.read_text())["source"]["bucket"]
    # The same domain, so the policy grants it; the prefix still belongs to support_tickets.
    grant(products_dir, "customer_support", buckets=[{"bucket": bucket, "prefixes": [prefix]}])

    def public_copy(raw: dict[str, Any]) -> None:
        raw["source"]["prefix"] = prefix

    copy = _write(products_dir, "support_tickets", "tickets_for_everyone", public_copy)

    checked = mesh_rag.run("check", ok=False)
    assert checked.returncode == 1
    invalid = [line for line in checked.stdout.splitlines() if line.startswith("INVALID")]
    assert invalid == [
        f"INVALID {original}: field 'source.prefix': s3://{bucket}/support_tickets/ overlaps "
        f"s3://{bucket}/{prefix}, the landing prefix of tickets_for_everyone ({copy}): a "
        "landing prefix belongs to exactly one product",
        f"INVALID {copy}: field 'source.prefix': s3://{bucket}/{prefix} overlaps "
        f"s3://{bucket}/support_tickets/, the landing prefix of support_tickets ({original}): "
        "a landing prefix belongs to exactly one product",
    ], checked.stdout


def test_neighbouring_prefixes_do_not_overlap(products_dir: Path) -> None:
    tickets = yaml.safe_load((products_dir / "support_tickets.yaml").read_text())
    bucket = tickets["source"]["bucket"]
    grant(products_dir, "customer_support", buckets=[{"bucket": bucket, "prefixes": ["returns/"]}])

    def returns(raw: dict[str, Any]) -> None:
        raw["source"]["prefix"] = "returns/"

    _write(products_dir, "support_tickets", "returns", returns)
    contracts, problems = check_contracts(products_dir)
    assert problems == []
    assert "returns" in [c.name for c in contracts]


def test_a_prefix_outside_the_grant_is_refused(products_dir: Path) -> None:
    def elsewhere(raw: dict[str, Any]) -> None:
        raw["source"]["prefix"] = "support_tickets_archive/"

    path = _write(products_dir, "support_tickets", "archive", elsewhere)
    _, problems = check_contracts(products_dir)
    assert [(p.path, p.field) for p in problems] == [(path, "source.prefix")]
    bucket = yaml.safe_load(path.read_text())["source"]["bucket"]
    assert problems[0].problem == (
        f"s3://{bucket}/support_tickets_archive/ is outside the landing prefixes the platform "
        f"policy ({_policy(products_dir)}, domain customer_support) grants: "
        f"['s3://{bucket}/support_tickets/']"
    )


# --- reproduction 3: a folder of the machine --------------------------------------------------


def _folder(path: str, pattern: str = "*") -> Any:
    def edit(raw: dict[str, Any]) -> None:
        raw["source"].update(path=path, pattern=pattern)
        raw["quality"] = {"min_text_chars": 1}
        raw["schema"]["metadata_fields"] = []

    return edit


def test_a_folder_outside_the_grant_is_refused(
    mesh_rag: MeshRag, products_dir: Path, access: SourceContext
) -> None:
    path = _write(products_dir, "hr_policies", "os_release", _folder("/etc", "os-release"))
    granted = str((products_dir.parent / "sample_data" / "hr_policies").resolve())

    checked = mesh_rag.run("check", ok=False)
    assert checked.returncode == 1
    expected = (
        f"INVALID {path}: field 'source.path': /etc is outside the folders the platform policy "
        f"({_policy(products_dir)}, domain people) grants: ['{granted}']"
    )
    assert expected in checked.stdout.splitlines(), checked.stdout
    assert "ok      hr_policies" in checked.stdout

    built = mesh_rag.run("build", "--product", "os_release", ok=False)
    assert built.returncode == 1 and f"{path}: field 'source.path'" in built.stderr

    refused = _refused_at_read(path, access)
    assert refused.field == "source.path"
    assert _line(refused) in checked.stdout

    # A broken contract fails only its own domain's code location.
    found = domains(products_dir)
    assert [p.path for p in found["people"].problems] == [path]
    assert found["commerce"].problems == found["customer_support"].problems == []


def test_dot_dot_and_links_cannot_lead_out_of_a_granted_folder(
    products_dir: Path, access: SourceContext
) -> None:
    granted = (products_dir.parent / "sample_data" / "hr_policies").resolve()
    (granted / "etc").symlink_to("/etc")
    climbing = _write(
        products_dir, "hr_policies", "climbing", _folder(f"{granted}/../../../../../../../etc")
    )
    linked = _write(products_dir, "hr_policies", "linked", _folder(f"{granted}/etc"))
    pattern = _write(products_dir, "hr_policies", "pattern", _folder(str(granted), "../*/*.md"))
    _, problems = check_contracts(products_dir)
    assert sorted((p.path.name, p.field, p.problem.split(" is outside")[0]) for p in problems) == [
        (climbing.name, "source.path", "/etc"),
        (linked.name, "source.path", "/etc"),
        (pattern.name, "source.pattern", f"'../*/*.md' reaches outside the folder {granted}: "
         "a pattern may not start at / or hold '..'"),
    ]  # fmt: skip
    for path in (climbing, linked, pattern):
        assert _refused_at_read(path, access).field in ("source.path", "source.pattern")


def test_a_file_linked_out_of_a_granted_folder_is_refused_at_read(
    mesh_rag: MeshRag,
    products_dir: Path,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
) -> None:
    policies = contracts["hr_policies"]
    folder = policies.resolve_path(policies.source.path or "")
    secret = products_dir.parent / "elsewhere" / "salaries.md"
    secret.parent.mkdir()
    secret.write_text("# Salaries\n\nEvery salary of the company, not for everyone.\n")
    (folder / "salaries.md").symlink_to(secret)
    assert check_contracts(products_dir)[1] == []  # the declared folder is granted
    with pytest.raises(SourceNotGranted) as refused:
        read_source(policies, 0, access)
    assert refused.value.field == "source.path"
    assert refused.value.problem.startswith(
        f"{folder / 'salaries.md'} is a link to {secret.resolve()}, outside the folders the "
        f"platform policy ({_policy(products_dir)}, domain people) grants"
    )
    built = mesh_rag.run("build", "--product", "hr_policies", ok=False)
    assert built.returncode == 1
    assert f"{folder / 'salaries.md'} is a link to {secret.resolve()}" in built.stdout
    assert "shards 00, 01, 02, 03" in built.stdout and "Traceback" not in built.stdout


# --- the read checks the policy as it stands ----------------------------------------------------


def test_a_revoked_grant_stops_the_next_read_with_the_message_check_gives(
    mesh_rag: MeshRag,
    products_dir: Path,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
) -> None:
    policies = contracts["hr_policies"]  # loaded while granted, as a long-running process holds it
    assert _changes(policies, access) == 12
    policy = yaml.safe_load(_policy(products_dir).read_text())
    del policy["domains"]["people"]
    _policy(products_dir).write_text(yaml.safe_dump(policy))

    with pytest.raises(SourceNotGranted) as refused:
        read_source(policies, 0, access)
    checked = mesh_rag.run("check", ok=False)
    path = products_dir / "hr_policies.yaml"
    assert f"INVALID {path}: {_line(refused.value)}" in checked.stdout.splitlines()
    assert refused.value.problem == (
        f"the platform policy ({_policy(products_dir)}) grants domain people no source; it lists "
        "['commerce', 'customer_support']"
    )


def test_without_a_policy_no_source_is_granted(
    products_dir: Path,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moved = products_dir.parent / "elsewhere" / "platform.yaml"
    moved.parent.mkdir()
    _policy(products_dir).rename(moved)
    loaded, problems = check_contracts(products_dir)
    assert loaded == []
    assert sorted((p.path.name, p.field) for p in problems) == [
        ("catalog_products.yaml", "source.table"),
        ("hr_policies.yaml", "source.path"),
        ("support_tickets.yaml", "source.bucket"),
    ]
    assert {p.problem for p in problems} == {
        f"no platform policy grants any source: there is no {POLICY_FILE} in "
        f"{products_dir.resolve()} or a folder above it, and MESH_RAG_PLATFORM_POLICY is not set"
    }
    with pytest.raises(SourceNotGranted):
        read_source(contracts["hr_policies"], 0, access)

    # The platform may keep its policy outside the contracts folder and name it.
    monkeypatch.setenv("MESH_RAG_PLATFORM_POLICY", str(moved))
    assert check_contracts(products_dir)[1] == []
    assert _changes(contracts["hr_policies"], source_ctx(access.engine, access.s3)) == 12
    monkeypatch.setenv("MESH_RAG_PLATFORM_POLICY", str(moved.with_name("missing.yaml")))
    problems = check_contracts(products_dir)[1]
    assert len(problems) == 3 and all(
        "missing.yaml (named by MESH_RAG_PLATFORM_POLICY) does not exist" in p.problem
        for p in problems
    )


def test_a_broken_policy_grants_nothing_and_says_why(products_dir: Path) -> None:
    _policy(products_dir).write_text("domains:\n  people:\n    folder: [x]\n")
    problems = check_contracts(products_dir)[1]
    assert len(problems) == 3
    assert {p.problem for p in problems} == {
        f"the platform policy {_policy(products_dir)} is invalid, so no source is granted: "
        "field 'domains.people.folder': Extra inputs are not permitted"
    }


# --- what the policy grants still builds ------------------------------------------------------


def test_a_contract_the_policy_grants_builds_and_answers(
    mesh_rag: MeshRag, products_dir: Path
) -> None:
    granted = products_dir.parent / "sample_data" / "hr_policies"
    handbook = granted / "handbook"  # below the people domain's granted folder
    handbook.mkdir()
    for name, body in {
        "badges.md": "# Badges\n\nCollect your office badge from reception on your first day.\n",
        "parking.md": "# Parking\n\nBicycle parking is in the basement; cars park on level two.\n",
    }.items():
        (handbook / name).write_text(body)

    def handbook_source(raw: dict[str, Any]) -> None:
        _folder(str(handbook), "*.md")(raw)
        raw["acl_groups"] = ["employees"]

    _write(products_dir, "hr_policies", "handbook", handbook_source)
    mesh_rag.run("check")
    built = mesh_rag.run("build", "--product", "handbook").stdout
    assert "handbook: index matches its source: 2 documents" in built, built
    found = json.loads(
        mesh_rag.run(
            "query", "where do I park my bicycle", "--group", "employees", "--product",
            "handbook", "--json", "-k", "1",
        ).stdout
    )  # fmt: skip
    assert [hit["doc_id"] for hit in found["hits"]] == ["parking.md"]
