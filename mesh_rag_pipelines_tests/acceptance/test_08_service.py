"""The retrieval service as an application meets it: `mesh-rag serve` started by the user beside
`mesh-rag ui`, callers identified by tokens of an OIDC issuer on loopback or by API keys made
with `mesh-rag keys`, and `mesh-rag query` reaching the service once it is configured."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mesh_rag_pipelines_tests.acceptance.harness import MESH_RAG, Acceptance
from mesh_rag_pipelines_tests.oidc_issuer import OidcIssuer
from mesh_rag_pipelines_tests.service_harness import RunningService

AUDIENCE = "mesh-rag-acceptance"
QUERY = "hotel cap in New York"


@dataclass
class Service:
    issuer: OidcIssuer
    running: RunningService

    def token(self, *groups: str) -> str:
        return self.issuer.token("app@northwind.example", list(groups), AUDIENCE)

    def post(self, route: str, bearer: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{self.running.url}{route}",
            json=body,
            headers={"Authorization": f"Bearer {bearer}"},
            timeout=60,
        )

    def search(self, bearer: str, query: str, **fields: Any) -> httpx.Response:
        return self.post("/v1/search", bearer, {"query": query, **fields})


@pytest.fixture(scope="module")
def service(acceptance: Acceptance) -> Iterator[Service]:
    issuer = OidcIssuer()
    env = {**acceptance.env, "MESH_RAG_OIDC_ISSUER": issuer.url, "MESH_RAG_OIDC_AUDIENCE": AUDIENCE}
    running = RunningService(Path(MESH_RAG), env, acceptance.root)
    try:
        yield Service(issuer, running)
    finally:
        running.stop()
        issuer.stop()


def hit_keys(hits: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(hit["product"], hit["doc_id"], hit["chunk_no"]) for hit in hits]


@pytest.mark.parametrize(
    ("group", "readable"),
    [("customers", {"catalog_products"}), ("support_agents", {"support_tickets"})],
)
def test_a_tokens_groups_decide_what_is_returned(
    acceptance: Acceptance, service: Service, group: str, readable: set[str]
) -> None:
    reply = service.search(service.token(group), QUERY, k=5)
    assert reply.status_code == 200, reply.text
    served = reply.json()["results"]
    assert len(served) == 5
    assert {hit["product"] for hit in served} == readable
    # The same caller reading the store directly gets the very same results.
    direct = acceptance.query_json(QUERY, group, k=5)["hits"]
    assert hit_keys(served) == hit_keys(direct)

    catalog = httpx.get(
        f"{service.running.url}/v1/products",
        headers={"Authorization": f"Bearer {service.token(group)}"},
        timeout=30,
    )
    assert catalog.status_code == 200, catalog.text
    assert {product["name"] for product in catalog.json()["products"]} == readable


def test_a_request_without_a_valid_identity_is_refused(service: Service) -> None:
    anonymous = httpx.post(f"{service.running.url}/v1/search", json={"query": QUERY}, timeout=60)
    assert anonymous.status_code == 401
    for bearer in (
        "not-a-token",
        service.token("employees") + "x",
        "mrk_0123456789abcdef_" + "x" * 30,
    ):
        assert service.search(bearer, QUERY).status_code == 401


def test_a_revoked_key_is_refused_on_the_next_request(
    acceptance: Acceptance, service: Service
) -> None:
    created = acceptance.cli_ok(
        "keys", "create", "--name", "acceptance-app", "--group", "customers"
    ).stdout
    key = next(word for word in created.split() if word.startswith("mrk_"))
    key_id = key.split("_")[1]
    assert service.search(key, QUERY).status_code == 200
    listed = acceptance.cli_ok("keys", "list").stdout
    assert key_id in listed and key not in listed

    acceptance.cli_ok("keys", "revoke", "--id", key_id)
    refused = service.search(key, QUERY)
    assert refused.status_code == 401, refused.text


def test_mesh_rag_query_uses_the_configured_service(
    acceptance: Acceptance, service: Service
) -> None:
    served = service.search(service.token("customers"), QUERY, k=3).json()["results"]
    env = {
        **acceptance.env,
        "MESH_RAG_SERVICE_URL": service.running.url,
        "MESH_RAG_SERVICE_TOKEN": service.token("customers"),
    }
    done = subprocess.run(
        [MESH_RAG, "query", QUERY, "-k", "3", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert hit_keys(json.loads(done.stdout)["hits"]) == hit_keys(served)


def release_validate(acceptance: Acceptance, version: str) -> str:
    done = acceptance.cli("release", "validate", "--product", "hr_policies", "--version", version)
    assert "| feedback_queries |" in done.stdout, done.stdout + done.stderr
    return done.stdout


def test_accepted_feedback_changes_the_next_release_report(
    acceptance: Acceptance, service: Service
) -> None:
    status = acceptance.cli_ok("release", "status", "--product", "hr_policies").stdout
    found = re.search(r"candidate (\S+), rollback target (\S+)", status)
    assert found, status
    others = [version for version in found.groups() if version != "none"]
    assert others, f"no index version of hr_policies besides the live one:\n{status}"
    token = service.token("employees")
    reply = service.search(token, "parental leave", products=["hr_policies"], k=3)
    assert reply.status_code == 200, reply.text
    served = reply.json()
    right = f"hr_policies/{served['results'][-1]['doc_id']}"
    judged = service.post(
        "/v1/feedback",
        token,
        {"response_id": served["response_id"], "helpful": False, "right_results": [right]},
    )
    assert judged.status_code == 200, judged.text
    before = release_validate(acceptance, others[0])
    assert "| feedback_queries |  | 0 |" in before
    assert "feedback_hit_rate" not in before

    listed = acceptance.cli_ok("feedback", "list", "--product", "hr_policies").stdout
    candidates = re.findall(r"^#(\d+)\s+hr_policies\s+candidate\s", listed, re.M)
    assert len(candidates) == 1, listed
    acceptance.cli_ok("feedback", "accept", "--id", candidates[0], "--reason", "right policy")

    after = release_validate(acceptance, others[0])
    assert "| feedback_queries |  | 1 |" in after
    assert "| feedback_hit_rate |" in after
