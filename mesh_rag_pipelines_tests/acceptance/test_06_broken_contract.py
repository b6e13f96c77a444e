"""A contract that cannot become a pipeline takes down only its own domain: its code location
shows the file and the field, the other domains load, and the command line keeps serving the
healthy products while saying which domain is broken. The contract is restored afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from mesh_rag_pipelines_tests.acceptance.harness import Acceptance, Location

PRODUCT = "hr_policies"
BROKEN_DOMAIN = "people"
HEALTHY_DOMAINS = {"commerce", "customer_support"}
BROKEN_FIELD = "chunking.max_words"
TICKET_QUERY = "customer whose tent went missing in transit right before a John Muir Trail permit"


@pytest.fixture(scope="module")
def broken_location(acceptance: Acceptance) -> Iterator[Location]:
    """The people location reloaded with `max_words: lots` in hr_policies' contract."""
    acceptance.wait_until_idle(quiet=5)
    before = acceptance.edit_contract(PRODUCT, "max_words: 180", "max_words: lots")
    try:
        yield acceptance.reload_location(BROKEN_DOMAIN)
    finally:
        acceptance.contract_path(PRODUCT).write_text(before)
        restored = acceptance.reload_location(BROKEN_DOMAIN)
        assert restored.loaded, restored.error


def names_the_broken_domain(output: str) -> bool:
    """Whether output says which domain is broken and what is wrong in it."""
    return BROKEN_DOMAIN in output and BROKEN_FIELD in output


def test_the_broken_domain_shows_a_load_error_naming_the_file_and_field(
    broken_location: Location,
) -> None:
    assert broken_location.error is not None
    assert f"{BROKEN_DOMAIN}/{PRODUCT}/defs.yaml" in broken_location.error
    assert BROKEN_FIELD in broken_location.error


def test_the_other_domains_stay_loaded(acceptance: Acceptance, broken_location: Location) -> None:
    locations = acceptance.locations()
    assert {name: locations[name].loaded for name in HEALTHY_DOMAINS} == dict.fromkeys(
        HEALTHY_DOMAINS, True
    )


def test_products_lists_the_healthy_products_and_names_the_broken_domain(
    acceptance: Acceptance, broken_location: Location
) -> None:
    done = acceptance.cli("products")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "catalog_products" in done.stdout and "support_tickets" in done.stdout
    assert names_the_broken_domain(done.stdout + done.stderr), done.stdout + done.stderr


def test_a_query_of_a_healthy_product_answers_and_names_the_broken_domain(
    acceptance: Acceptance, broken_location: Location
) -> None:
    done = acceptance.cli(
        "query", TICKET_QUERY, "--group", "support_agents", "--product", "support_tickets",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    hits = json.loads(done.stdout)["hits"]
    assert hits and {hit["product"] for hit in hits} == {"support_tickets"}
    assert names_the_broken_domain(done.stdout + done.stderr), done.stdout + done.stderr
