"""The retrieval service as applications reach it: `mesh-rag serve` in its own process, over
HTTP, against a real store, with tokens of a real OIDC issuer on loopback and API keys made
with `mesh-rag keys`. No valid identity, no answer; a token's groups alone decide what comes
back; every search and answer is logged with its query masked."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, select

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.governance.access import SERVING_ROLE
from mesh_rag_pipelines.pipeline import judge_freshness
from mesh_rag_pipelines.retrieval import Caller
from mesh_rag_pipelines.retrieval.request import RetrievalRequest, retrieve
from mesh_rag_pipelines.services.embedded_postgres import local_login
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.index_versions import live_versions
from mesh_rag_pipelines.store.schema import Feedback, QueryLog
from mesh_rag_pipelines_tests.conftest import MESH_RAG, MeshRag
from mesh_rag_pipelines_tests.helpers import seed_and_sync
from mesh_rag_pipelines_tests.oidc_issuer import OidcIssuer, new_rsa_key
from mesh_rag_pipelines_tests.service_harness import RunningService

AUDIENCE = "mesh-rag-api"
QUERY = "my tent arrived damaged and I want a refund"
BUILT = ("hr_policies", "support_tickets")


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    running = OidcIssuer()
    yield running
    running.stop()


@pytest.fixture
def built(
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
    s3: Any,
) -> dict[str, DataProductContract]:
    chosen = {name: contracts[name] for name in BUILT}
    seed_and_sync(list(chosen.values()), engine, s3, access, minilm)
    for contract in chosen.values():
        judge_freshness(contract, access)
    return chosen


@pytest.fixture
def service(
    built: dict[str, DataProductContract], mesh_rag: MeshRag, issuer: OidcIssuer
) -> Iterator[RunningService]:
    env = {k: v for k, v in mesh_rag.env.items() if not k.startswith("MESH_RAG_ANSWER")}
    env.update(MESH_RAG_OIDC_ISSUER=issuer.url, MESH_RAG_OIDC_AUDIENCE=AUDIENCE)
    running = RunningService(Path(MESH_RAG), env, mesh_rag.cwd)
    yield running
    running.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _search(service: RunningService, token: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{service.url}/v1/search", json={"query": QUERY, **body}, headers=_bearer(token),
        timeout=60,
    )  # fmt: skip


def _tampered(token: str, **claims: Any) -> str:
    """The token with its claims edited and its signature kept."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded.update(claims)
    edited = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    return f"{header}.{edited}.{signature}"


def _library_results(database_url: str, contracts: list[DataProductContract], groups: list[str],
                     minilm: Embedder, k: int) -> list[tuple[str, str, int]]:  # fmt: skip
    """What the retrieval library answers the same caller, as the serving role."""
    serving = create_engine(local_login(database_url, SERVING_ROLE))
    try:
        found = retrieve(
            serving,
            contracts,
            RetrievalRequest(QUERY, Caller.of(groups), k=k, unit="chunks"),
            {minilm.model_id: minilm},
        )
    finally:
        serving.dispose()
    return [(h.product, h.doc_id, h.chunk_no) for h in found.hits]


def _metric(service: RunningService, name: str, **labels: str) -> float:
    text = httpx.get(f"{service.url}/metrics", timeout=30).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_no_valid_identity_no_answer_and_groups_come_from_the_token_alone(
    service: RunningService,
    issuer: OidcIssuer,
    mesh_rag: MeshRag,
    contracts: dict[str, DataProductContract],
    database_url: str,
    minilm: Embedder,
) -> None:
    agent = issuer.token("agent-1", ["support_agents"], AUDIENCE)
    refused = {
        "no token": None,
        "not a bearer token": "Basic YWdlbnQ6c2VjcmV0",
        "expired": issuer.token("agent-1", ["support_agents"], AUDIENCE, lifetime=-60),
        "wrong audience": issuer.token("agent-1", ["support_agents"], "another-api"),
        "wrong issuer": issuer.token(
            "agent-1", ["support_agents"], AUDIENCE, issuer="http://127.0.0.1:9/"
        ),  # fmt: skip
        "wrong key": issuer.token("agent-1", ["support_agents"], AUDIENCE, key=new_rsa_key()),
        "tampered groups": _tampered(agent, groups=["support_agents", "hr"]),
        "unknown api key": "mrk_0123456789abcdef_" + "x" * 43,
        "garbage": "not-a-token",
    }
    for why, token in refused.items():
        headers = {} if token is None else {"Authorization": token}
        if token is not None and not token.startswith("Basic"):
            headers = _bearer(token)
        for method, path in (("POST", "/v1/search"), ("POST", "/v1/answer"),
                             ("GET", "/v1/products"), ("POST", "/v1/feedback")):  # fmt: skip
            body: dict[str, Any] | None = {"query": QUERY} if path != "/v1/products" else None
            if path == "/v1/feedback":
                body = {"response_id": str(uuid.uuid4()), "helpful": True}
            reply = httpx.request(
                method, f"{service.url}{path}", json=body, headers=headers, timeout=30
            )
            assert reply.status_code == 401, (why, path, reply.text)
            assert reply.headers["WWW-Authenticate"].startswith("Bearer"), why
    assert _metric(service, "mesh_rag_requests_total", route="/v1/search", status="401") == len(
        refused
    )
    # The issuer's keys were found through its discovery document, once, and kept.
    assert issuer.discovery_requests == 1

    # The same query, three callers: each sees exactly what the library shows their groups.
    everything = list(contracts.values())
    seen: dict[str, list[tuple[str, str, int]]] = {}
    for name, groups in {"agent": ["support_agents"], "hr": ["hr"],
                         "both": ["hr", "support_agents"]}.items():  # fmt: skip
        reply = _search(service, issuer.token(name, groups, AUDIENCE), k=40)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["abstention"] is None
        seen[name] = [(r["product"], r["doc_id"], r["chunk_no"]) for r in body["results"]]
        assert seen[name] == _library_results(database_url, everything, groups, minilm, 40)
    assert len(seen["agent"]) == 40 and {p for p, _, _ in seen["agent"]} == {"support_tickets"}
    assert {p for p, _, _ in seen["hr"]} == {"hr_policies"}
    assert {p for p, _, _ in seen["both"]} == {"hr_policies", "support_tickets"}
    outsider = _search(service, issuer.token("guest", ["contractors"], AUDIENCE)).json()
    assert outsider["results"] == []
    assert "is shared with the caller's groups ['contractors']" in outsider["abstention"]

    # An API key: its groups are the ones it was made with; revoked, it is refused at once.
    made = mesh_rag.run("keys", "create", "--name", "ticket-bot", "--group", "support_agents",
                        "--expires", "1d")  # fmt: skip
    key = made.stdout.strip().splitlines()[-1]
    key_id = key.split("_")[1]
    assert key.startswith("mrk_")
    listed = mesh_rag.run("keys", "list").stdout
    assert key_id in listed and "ticket-bot" in listed and "active" in listed
    assert key.split("_", 2)[2] not in listed
    by_key = _search(service, key, k=40)
    assert by_key.status_code == 200, by_key.text
    assert [(r["product"], r["doc_id"], r["chunk_no"]) for r in by_key.json()["results"]] == (
        seen["agent"]
    )
    mesh_rag.run("keys", "revoke", "--id", key_id)
    after = _search(service, key, k=40)
    assert after.status_code == 401, after.text
    assert "revoked" in mesh_rag.run("keys", "list").stdout


def test_search_answer_catalog_feedback_and_the_query_log(
    service: RunningService,
    issuer: OidcIssuer,
    engine: Engine,
) -> None:
    agent = issuer.token("agent-7", ["support_agents"], AUDIENCE)
    assert httpx.get(f"{service.url}/healthz", timeout=30).json() == {"status": "ok"}
    ready = httpx.get(f"{service.url}/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    live = {v.product: v.id for v in live_versions(engine, list(BUILT))}

    # Search, with provenance; the query holds an email address, which is never logged.
    asked = f"{QUERY}, write to jane.doe@example.com"
    reply = httpx.post(
        f"{service.url}/v1/search",
        json={"query": asked, "k": 5, "unit": "documents", "products": ["support_tickets"]},
        headers=_bearer(agent),
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    found = reply.json()
    response_id = uuid.UUID(found["response_id"])
    assert found["products"] == ["support_tickets"]
    assert len(found["results"]) == 5
    assert len({r["doc_id"] for r in found["results"]}) == 5
    for result in found["results"]:
        assert result["index_version"] == live["support_tickets"]
        assert result["doc_version"] >= 1 and result["source_updated_at"]
        assert result["text"]
    logged = _logged(engine, response_id)
    assert logged.subject == "agent-7" and logged.identity_kind == "oidc"
    assert logged.route == "search" and logged.status == 200
    assert "jane.doe@example.com" not in logged.query_masked
    assert "<EMAIL_ADDRESS>" in logged.query_masked
    assert logged.products == ["support_tickets"]
    assert logged.index_versions == [live["support_tickets"]]
    assert logged.k == 5 and logged.unit == "documents"
    assert logged.result_ids == [
        f"{r['product']}/{r['doc_id']}#{r['chunk_no']}" for r in found["results"]
    ]
    assert logged.embed_ms is not None and logged.search_ms is not None
    assert logged.abstention is None

    # An answer cites what the caller may read; with nothing readable it abstains.
    answered = httpx.post(
        f"{service.url}/v1/answer", json={"query": QUERY, "k": 3}, headers=_bearer(agent),
        timeout=60,
    ).json()  # fmt: skip
    assert answered["abstention"] is None and answered["model"] is None
    assert len(answered["citations"]) == 3
    assert {c["product"] for c in answered["citations"]} == {"support_tickets"}
    assert _logged(engine, uuid.UUID(answered["response_id"])).route == "answer"
    guest = issuer.token("guest", ["contractors"], AUDIENCE)
    abstained = httpx.post(
        f"{service.url}/v1/answer", json={"query": QUERY}, headers=_bearer(guest), timeout=60
    ).json()
    assert abstained["citations"] == [] and abstained["text"] == ""
    assert "is shared with the caller's groups" in abstained["abstention"]
    assert _logged(engine, uuid.UUID(abstained["response_id"])).abstention

    # The catalog: only what the caller may read, with its owner, SLA, version and status.
    catalog = httpx.get(f"{service.url}/v1/products", headers=_bearer(agent), timeout=30).json()
    assert [p["name"] for p in catalog["products"]] == ["support_tickets"]
    tickets = catalog["products"][0]
    assert tickets["owner"] == "team:support-ops"
    assert tickets["live_index_version"] == live["support_tickets"]
    assert tickets["status"]["in_sync"] is True and tickets["status"]["waiting_changes"] == 0
    employee = issuer.token("emp", ["employees"], AUDIENCE)
    theirs = httpx.get(f"{service.url}/v1/products", headers=_bearer(employee), timeout=30)
    by_name = {p["name"]: p for p in theirs.json()["products"]}
    assert sorted(by_name) == ["catalog_products", "hr_policies"]
    assert by_name["catalog_products"]["live_index_version"] is None
    assert by_name["hr_policies"]["live_index_version"] == live["hr_policies"]

    # Feedback: recorded under the verified caller, a comment's email masked, bad input named.
    # Whose response it was is judged when candidates are collected (test_feedback.py), so a
    # judgment on an unknown or another caller's response is recorded and proposes nothing.
    right = f"support_tickets/{found['results'][1]['doc_id']}"
    judged = httpx.post(
        f"{service.url}/v1/feedback",
        json={
            "response_id": str(response_id),
            "helpful": False,
            "right_results": [right],
            "comment": "wrong order, ask jane.doe@example.com",
        },  # fmt: skip
        headers=_bearer(agent),
        timeout=30,
    )
    assert judged.status_code == 200, judged.text
    for body, status in (
        ({"response_id": str(uuid.uuid4()), "helpful": True}, 200),
        (
            {"response_id": str(response_id), "helpful": True, "right_results": ["hr_policies/x"]},
            422,
        ),  # fmt: skip
        ({"response_id": str(response_id), "helpful": True, "right_results": ["no-slash"]}, 422),
        ({"response_id": "not-a-uuid", "helpful": True}, 422),
        ({"response_id": str(response_id)}, 422),
    ):
        reply = httpx.post(
            f"{service.url}/v1/feedback", json=body, headers=_bearer(agent), timeout=30
        )
        assert reply.status_code == status, (body, reply.text)
    someone_else = httpx.post(
        f"{service.url}/v1/feedback",
        json={"response_id": str(response_id), "helpful": True},
        headers=_bearer(guest),
        timeout=30,
    )
    assert someone_else.status_code == 200
    with engine.connect() as conn:
        judgments = conn.execute(select(Feedback).order_by(Feedback.id)).all()
    assert [(j.subject, j.response_id == response_id) for j in judgments] == [
        ("agent-7", True), ("agent-7", False), ("guest", True)
    ]  # fmt: skip
    assert judgments[0].right_results == [right] and judgments[0].helpful is False
    assert judgments[0].comment == "wrong order, ask <EMAIL_ADDRESS>"

    # Metrics: requests by route, status and product; abstentions.
    assert _metric(service, "mesh_rag_requests_total", route="/v1/search", status="200",
                   product="support_tickets") == 1  # fmt: skip
    assert _metric(service, "mesh_rag_requests_total", route="/v1/answer", status="200") == 2
    assert _metric(service, "mesh_rag_abstentions_total", route="/v1/answer") == 1
    assert _metric(service, "mesh_rag_request_seconds_count", route="/v1/search") == 1
    assert _metric(service, "mesh_rag_errors_total") == 0
    with engine.connect() as conn:
        assert len(conn.execute(select(QueryLog.id)).all()) == 3


def _logged(engine: Engine, response_id: uuid.UUID, wait_seconds: float = 30.0) -> Any:
    """The query log's row of a response (written after the response is sent)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        with engine.connect() as conn:
            row = conn.execute(select(QueryLog).where(QueryLog.response_id == response_id)).first()
        if row is not None or time.monotonic() > deadline:
            assert row is not None, f"no query log row for {response_id}"
            return row
        time.sleep(0.2)
