"""What a data engineer types, and what `mesh-rag` answers: a poison record is listed and the
build goes on, a broken contract takes down only itself, a failed build names its cause once,
and every build says what it did."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.governance.policy import POLICY_FILE
from mesh_rag_pipelines_tests.conftest import MeshRag
from mesh_rag_pipelines_tests.helpers import grant
from mesh_rag_pipelines_tests.landing import land, project_event, ticket
from mesh_rag_pipelines_tests.openai_compatible_server import OpenAICompatibleServer


def _only(products_dir: Path, *names: str) -> None:
    for path in products_dir.glob("*.yaml"):
        if path.stem not in names and path.name != POLICY_FILE:
            path.unlink()


def test_a_quarantined_record_is_listed_and_the_build_succeeds(
    mesh_rag: MeshRag,
    products_dir: Path,
    contracts: dict[str, DataProductContract],
    s3,  # type: ignore[no-untyped-def]
) -> None:
    _only(products_dir, "support_tickets")
    tickets = contracts["support_tickets"]
    mesh_rag.run("seed")
    poison = ticket("T-90001", 1, "Stove pump", "Fuel \x00 leaks from the pump.")
    good = ticket("T-90002", 1, "Tent pole", "A tent pole snapped in the wind on the first night.")
    land(
        s3,
        tickets,
        "poison.jsonl",
        [project_event("upsert", poison), project_event("upsert", good)],
    )

    built = mesh_rag.run("build", "--product", "support_tickets")
    assert "FAILED" not in built.stdout
    assert "1 record quarantined" in built.stdout

    listed = mesh_rag.run("quarantine", "list", "--product", "support_tickets").stdout
    assert listed.splitlines() == [
        f"support_tickets  s3://{tickets.source.bucket}/support_tickets/poison.jsonl  line 1 "
        "field body: contains a NUL (0x00) character, which text cannot hold",
        "1 quarantined records",
    ]
    found = json.loads(
        mesh_rag.run(
            "query", "tent pole snapped", "--group", "support_agents", "--json", "-k", "1"
        ).stdout
    )
    assert [hit["doc_id"] for hit in found["hits"]] == ["T-90002"]


def test_a_broken_contract_leaves_the_other_products_served(
    mesh_rag: MeshRag, products_dir: Path
) -> None:
    _only(products_dir, "support_tickets", "hr_policies")
    mesh_rag.run("demo")
    broken = products_dir / "hr_policies.yaml"
    broken.write_text(broken.read_text().replace("max_words: 180", "max_words: lots"))

    products = mesh_rag.run("products")
    assert "customer_support/support_tickets" in products.stdout
    assert f"{broken}: field 'chunking.max_words'" in products.stderr
    found = mesh_rag.run(
        "query", "tent", "--group", "support_agents", "--product", "support_tickets", "--json"
    )
    assert json.loads(found.stdout)["products"] == ["support_tickets"]
    assert "hr_policies" in found.stderr

    refused = mesh_rag.run(
        "query", "leave", "--group", "employees", "--product", "hr_policies", ok=False
    )
    assert refused.returncode != 0
    assert f"{broken}: field 'chunking.max_words'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_an_unreadable_source_leaves_the_catalog_listed(
    mesh_rag: MeshRag,
    products_dir: Path,
    contracts: dict[str, DataProductContract],
    s3,  # type: ignore[no-untyped-def]
) -> None:
    _only(products_dir, "support_tickets", "hr_policies")
    mesh_rag.run("demo")
    bucket = contracts["support_tickets"].source.bucket
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for landed in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=landed["Key"])
    s3.delete_bucket(Bucket=bucket)

    listed = mesh_rag.run("products")
    assert "Traceback" not in listed.stderr
    lines = {line.split("  ", 1)[0]: line for line in listed.stdout.splitlines()}
    assert lines["people/hr_policies"].endswith("in sync")
    assert (
        f"source unreadable: s3://{bucket}/support_tickets/: NoSuchBucket"
        in lines["customer_support/support_tickets"]
    )


def test_a_failed_build_names_its_cause_once(mesh_rag: MeshRag, products_dir: Path) -> None:
    _only(products_dir, "hr_policies")
    contract = products_dir / "hr_policies.yaml"
    missing = products_dir.parent / "nowhere"
    grant(products_dir, "people", folders=[str(missing)])
    text = contract.read_text()
    contract.write_text(text.replace(text.split("path: ", 1)[1].split("\n", 1)[0], str(missing)))

    built = mesh_rag.run("build", ok=False)
    assert built.returncode == 1
    assert "Traceback" not in built.stdout + built.stderr
    summary = built.stdout.split("\n1 failure", 1)
    assert len(summary) == 2, built.stdout
    assert f"source folder {missing} does not exist" in summary[1]
    assert "shards 00, 01, 02, 03" in summary[1]
    assert "releases: ok" not in built.stdout


def test_a_build_says_what_it_did(mesh_rag: MeshRag, products_dir: Path) -> None:
    _only(products_dir, "hr_policies")
    first = mesh_rag.run("build").stdout
    assert (
        "hr_policies: 12 documents changed, 0 deleted; 139 texts embedded, 0 cache hits; "
        "model loaded in 1 run" in first
    ), first
    second = mesh_rag.run("build").stdout
    assert (
        "hr_policies: 0 documents changed, 0 deleted; 0 texts embedded, 0 cache hits; "
        "no model loaded" in second
    ), second


def test_query_results_carry_the_contract_metadata_fields(
    mesh_rag: MeshRag, products_dir: Path
) -> None:
    _only(products_dir, "hr_policies")
    mesh_rag.run("build")
    found = json.loads(
        mesh_rag.run(
            "query", "parental leave for a primary caregiver", "--group", "employees", "--json"
        ).stdout
    )
    top = found["hits"][0]
    assert top["doc_id"] == "parental-leave.md"
    assert set(top["metadata"]) == {"effective_date", "policy_owner"}
    answered = json.loads(
        mesh_rag.run(
            "answer", "parental leave for a primary caregiver", "--group", "employees", "--json"
        ).stdout
    )
    assert set(answered["citations"][0]["metadata"]) == {"effective_date", "policy_owner"}


def test_preflight_names_every_need_a_run_would_miss(
    mesh_rag: MeshRag, products_dir: Path, database_url: str
) -> None:
    server = OpenAICompatibleServer()
    server.start()
    try:
        catalog = products_dir / "catalog_products.yaml"
        text = catalog.read_text().replace(
            "  table: sample_sources.catalog_products\n",
            "  table: sample_sources.catalog_products\n  database_url_env: CATALOG_URL\n",
        )
        catalog.write_text(text)
        (products_dir / "orphan_catalog.yaml").write_text(
            text.replace("name: catalog_products", "name: orphan_catalog").replace(
                "CATALOG_URL", "NOWHERE_URL"
            )
        )
        policies = products_dir / "hr_policies.yaml"
        policies_text = policies.read_text()
        folder = policies_text.split("path: ", 1)[1].split("\n", 1)[0]
        # The platform grants what the contracts need: a run would miss each all the same.
        grant(
            products_dir,
            "commerce",
            databases=[
                {"database_url_env": env, "tables": ["sample_sources.*"]}
                for env in ("CATALOG_URL", "NOWHERE_URL")
            ],
        )
        grant(products_dir, "people", folders=[f"{folder}-moved"])
        policies.write_text(policies_text.replace(folder, f"{folder}-moved"))
        (products_dir / "api_policies.yaml").write_text(
            policies_text.replace("name: hr_policies", "name: api_policies").replace(
                "provider: local\n  model: all-MiniLM-L6-v2\n  dimensions: 384",
                "provider: openai\n  model: text-embedding-3-small\n  dimensions: 64",
            )
        )
        mesh_rag.env.update(
            CATALOG_URL=database_url.replace("postgresql+psycopg2://", "postgres://"),
            OPENAI_API_KEY="test-key",
            OPENAI_BASE_URL=server.base_url.removesuffix("/v1"),
        )
        found = mesh_rag.run("check", "--preflight", ok=False)
        assert found.returncode == 1
        lines = found.stdout.splitlines()
        failed = sorted(line.split(":", 1)[0] for line in lines if line.startswith("FAILED"))
        assert failed == [
            "FAILED  api_policies",
            "FAILED  catalog_products",
            "FAILED  hr_policies",
            "FAILED  orphan_catalog",
        ], found.stdout
        out = found.stdout
        assert (
            "orphan_catalog: table sample_sources.catalog_products: source.database_url_env "
            "NOWHERE_URL is not set" in out
        )
        assert "catalog_products: table sample_sources.catalog_products: NoSuchTableError" in out
        assert f"hr_policies: folder {folder}-moved: FileNotFoundError" in out
        assert "does OPENAI_BASE_URL need to end in /v1?" in out
        assert "ok      support_tickets: s3://" in out

        mesh_rag.env["OPENAI_BASE_URL"] = server.base_url
        policies.write_text(policies_text)
        (products_dir / "orphan_catalog.yaml").unlink()
        mesh_rag.run("seed")
        passed = mesh_rag.run("check", "--preflight")
        assert "FAILED" not in passed.stdout
    finally:
        server.stop()


def test_a_product_given_up_on_is_dropped_from_the_store(
    mesh_rag: MeshRag, products_dir: Path, engine: Engine
) -> None:
    _only(products_dir, "hr_policies")
    mesh_rag.run("build")
    refused = mesh_rag.run("drop", "--product", "hr_policies", ok=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    (products_dir / "hr_policies.yaml").unlink()
    dropped = mesh_rag.run("drop", "--product", "hr_policies", "--yes", "--reason", "retired")
    assert "hr_policies dropped: 12 documents, 1 index versions" in dropped.stdout
    with engine.connect() as conn:
        tables = ["document_state", "chunk", "source_cursor", "product_layout", "serving_pointer"]
        left = {
            table: conn.execute(
                text(f"SELECT count(*) FROM mesh_rag.{table} WHERE product = 'hr_policies'")
            ).scalar()
            for table in tables
        }
        index_tables = conn.execute(
            text("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'hr_policies%'")
        ).scalar()
        cached = conn.execute(text("SELECT count(*) FROM mesh_rag.embedding_cache")).scalar()
        history = conn.execute(
            text("SELECT action, reason FROM mesh_rag.release_event ORDER BY id DESC LIMIT 1")
        ).one()
    assert left == dict.fromkeys(tables, 0)
    assert index_tables == 0 and cached == 0
    assert tuple(history) == ("dropped", "retired")


def test_a_caller_group_hiding_a_second_group_is_refused(
    mesh_rag: MeshRag, products_dir: Path
) -> None:
    _only(products_dir, "hr_policies")
    mesh_rag.run("build")
    refused = mesh_rag.run("query", "leave", "--group", "x,employees", ok=False)
    assert refused.returncode == 1
    assert "invalid caller group 'x,employees'" in refused.stderr
    assert "Traceback" not in refused.stderr
