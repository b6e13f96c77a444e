"""PII is masked before anything is stored or sent: free text, titles, metadata (keys and
values) at any depth, document state, chunks, index rows, quarantine copies and references, the
landing ledger, and every request to an embedding or answering endpoint; an id holding PII is
refused; questions are masked for the platform's default types whatever the product masks; a
golden query that misses is recorded masked. The detector (Presidio's pattern recognizers, no
NLP model) runs offline."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_shared.serdes import serialize_value
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract, load_contract
from mesh_rag_pipelines.embedding import embedder_for
from mesh_rag_pipelines.governance.pii import PiiMasker
from mesh_rag_pipelines.orchestration.releases import golden_queries_check, release_asset
from mesh_rag_pipelines.orchestration.resources import EmbeddingModels, IndexStore
from mesh_rag_pipelines.pipeline import waiting_changes
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.retrieval.answer import OpenAIChat, answer
from mesh_rag_pipelines.retrieval.request import RetrievalRequest
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.quarantine import quarantined_records, redrive
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import sync_all
from mesh_rag_pipelines_tests.landing import contract_variant, land, project_event, ticket
from mesh_rag_pipelines_tests.openai_compatible_server import OpenAICompatibleServer

EMAILS = [f"customer.{n}@mail-{n}.example.com" for n in range(20)]
PHONES = [f"+1 415-555-01{n:02d}" for n in range(20)]
CARDS = ["4111 1111 1111 1111", "5500-0000-0000-0004", "4012888888881881", "3782 822463 10005"]
# Where the records above do not put PII: a metadata key, an object key, a document id.
KEY_EMAIL = "jane@example.com"
OBJECT_EMAIL = "jane.doe@example.com"
ID_EMAIL = "rachel.roe@example.org"
SECRETS = [*EMAILS, *PHONES, *CARDS]


def _digits(value: str) -> str:
    return "".join(char for char in value if char.isdigit())


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    server = OpenAICompatibleServer(default_dimensions=32)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def masked_tickets(products_dir: Path) -> DataProductContract:
    contract = contract_variant(products_dir, "tickets_pii", "jsonl")
    path = products_dir / "tickets_pii.yaml"
    path.write_text(
        path.read_text()
        .replace(
            "pii_fields: [customer_email]",
            "pii_fields: [customer_email, contact_email]\n"
            "pii_masking: {EMAIL_ADDRESS: placeholder, PHONE_NUMBER: placeholder, "
            "CREDIT_CARD: redact}",
        )
        .replace("provider: local", "provider: openai")
        .replace("model: all-MiniLM-L6-v2", "model: text-embedding-3-small")
        .replace("dimensions: 384", "dimensions: 32")
    )
    assert contract.name == "tickets_pii"
    return load_contract(path)


def _tickets() -> list[dict[str, Any]]:
    return [
        ticket(
            f"TCK-8{n:03d}",
            1,
            f"Callback to {PHONES[n]}",
            f"Please write to {EMAILS[n]} or call {PHONES[(n + 1) % 20]}. "
            f"I paid with card {CARDS[n % 4]} and the tent arrived torn.",
            product_area={
                "name": "tents",
                "contact_email": EMAILS[n],
                "note": f"cc {EMAILS[n]}",
                "contact": {"by_key": {KEY_EMAIL: "primary", EMAILS[n]: "secondary"}},
            },
        )
        for n in range(20)
    ]


def _everything_stored(engine: Engine) -> str:
    with engine.connect() as conn:
        tables = conn.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": SCHEMA},
        ).scalars()
        return "\n".join(
            row[0]
            for table in list(tables)
            for row in conn.execute(text(f'SELECT t::text FROM {SCHEMA}."{table}" t'))
        )


def _leaks(haystack: str) -> list[str]:
    """Secrets found as written, or (phones and cards) as their digits in any layout."""
    digits = _digits(haystack)
    emails = [*EMAILS, KEY_EMAIL, OBJECT_EMAIL, ID_EMAIL]
    found = [email for email in emails if email in haystack]
    return found + [n for n in [*PHONES, *CARDS] if n in haystack or _digits(n) in digits]


def test_no_pii_reaches_any_table_or_any_request(
    masked_tickets: DataProductContract,
    access: SourceContext,
    engine: Engine,
    server: OpenAICompatibleServer,
    monkeypatch: pytest.MonkeyPatch,
    s3: Any,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    records = _tickets()
    broken = json.dumps({"op": "upsert", "data": {**records[0], "version": "soon"}})
    pii_id = project_event("upsert", {**records[1], "ticket_id": ID_EMAIL})
    events = [*(project_event("upsert", r) for r in records), broken, pii_id]
    key = land(s3, masked_tickets, f"export-{OBJECT_EMAIL}.jsonl", events)

    sync_all(masked_tickets, access, embedder_for)
    chat = OpenAIChat("chat-model", "test-key", server.base_url)
    question = f"What did the customer {EMAILS[3]} pay with?"
    request = RetrievalRequest(question, Caller.of(["support_agents"]), k=3)
    answered = answer(engine, [masked_tickets], request, chat)

    stored = _everything_stored(engine)
    assert "<EMAIL_ADDRESS>" in stored and "<PHONE_NUMBER>" in stored
    assert _leaks(stored) == []
    sent = json.dumps(server.requests)
    assert len(server.chat_requests) == 1 and answered.citations
    assert "<EMAIL_ADDRESS>" in sent
    assert _leaks(sent) == []
    # Metadata keys at depth: masked, and two that mask alike are kept apart.
    with engine.connect() as conn:
        by_key = conn.execute(
            text(
                "SELECT metadata #> '{product_area,contact,by_key}' "
                f"FROM {SCHEMA}.document_state WHERE doc_id = 'TCK-8003'"
            )
        ).scalar_one()
    assert by_key == {"<EMAIL_ADDRESS>": "primary", "<EMAIL_ADDRESS>#2": "secondary"}
    # The object key: masked in the ledger and in quarantine, which list what a redrive takes.
    masked_ref = f"s3://{masked_tickets.source.bucket}/tickets_pii/<EMAIL_ADDRESS>.jsonl"
    listed = sorted(quarantined_records(engine, [masked_tickets.name]), key=lambda r: r.record_ref)
    assert [(r.source_ref, r.record_ref, r.doc_id) for r in listed] == [
        (masked_ref, "line 21", "TCK-8000"),
        (masked_ref, "line 22", None),
    ]
    assert listed[0].raw is not None and "<EMAIL_ADDRESS>" in listed[0].raw
    assert listed[1].field == "ticket_id" and listed[1].reason == (
        "the id holds PII the contract masks (EMAIL_ADDRESS); an id is stored, shown and "
        "joined as it is, never masked, so the record needs a surrogate key"
    )
    with engine.connect() as conn:
        ledger = set(
            conn.execute(text(f"SELECT object_key FROM {SCHEMA}.landing_object")).scalars()
        )
    assert ledger == {"tickets_pii/<EMAIL_ADDRESS>.jsonl"} and OBJECT_EMAIL in key
    assert waiting_changes(masked_tickets, access) == []  # the ledger still knows the object

    assert redrive(engine, masked_tickets, masked_ref) == 2
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.landing_object")).scalar() == 0
    sync_all(masked_tickets, access, embedder_for)
    assert len(quarantined_records(engine, [masked_tickets.name])) == 2
    assert _leaks(_everything_stored(engine)) == []


def _openai_variant(products_dir: Path, name: str, edit: Any = lambda text: text) -> Any:
    """A copy of the ticket contract embedding through the loopback OpenAI-compatible server."""
    contract_variant(products_dir, name, "jsonl")
    path = products_dir / f"{name}.yaml"
    path.write_text(
        edit(
            path.read_text()
            .replace("provider: local", "provider: openai")
            .replace("model: all-MiniLM-L6-v2", "model: text-embedding-3-small")
            .replace("dimensions: 384", "dimensions: 32")
        )
    )
    return load_contract(path)


QUESTION_PII = {
    "EMAIL_ADDRESS": "jane.doe@example.com",
    "PHONE_NUMBER": "+1 415-555-0199",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "US_SSN": "078-05-1120",
    "IBAN_CODE": "DE89 3704 0044 0532 0130 00",
}


def test_questions_are_masked_even_for_a_product_that_masks_nothing(
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    server: OpenAICompatibleServer,
    monkeypatch: pytest.MonkeyPatch,
    s3: Any,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    plain = _openai_variant(
        products_dir,
        "tickets_plain",
        lambda text: "\n".join(
            line for line in text.splitlines() if not line.lstrip().startswith("pii_masking:")
        ),
    )
    assert plain.pii_masking == {}
    land(
        s3,
        plain,
        "0001",
        [
            project_event("upsert", ticket("TCK-7001", 1, "Refund", "The refund went to my card.")),
            project_event("upsert", ticket("TCK-7002", 1, "Tent", "A tent pole cracked.")),
        ],
    )
    sync_all(plain, access, embedder_for)
    sent_while_building = len(server.requests)
    question = (
        f"I am {QUESTION_PII['EMAIL_ADDRESS']}, phone {QUESTION_PII['PHONE_NUMBER']}, card "
        f"{QUESTION_PII['CREDIT_CARD']}, SSN {QUESTION_PII['US_SSN']}, IBAN "
        f"{QUESTION_PII['IBAN_CODE']}: where is my refund?"
    )
    chat = OpenAIChat("chat-model", "test-key", server.base_url)
    answered = answer(
        engine, [plain], RetrievalRequest(question, Caller.of(["support_agents"]), k=2), chat
    )
    search(engine, [plain], question, Caller.of(["support_agents"]))

    asked = server.requests[sent_while_building:]
    assert len(asked) == 3 and len(server.chat_requests) == 1 and answered.citations
    sent = json.dumps(asked)
    digits = _digits(sent)
    for entity, value in QUESTION_PII.items():
        assert sent.count(value) == 0, entity
        assert entity == "EMAIL_ADDRESS" or _digits(value) not in digits, entity
    assert all(
        f"<{e}>" in sent for e in ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE")
    )
    assert "where is my refund?" in server.chat_requests[0]["messages"][1]["content"]


def test_a_golden_query_that_misses_is_recorded_by_position_and_masked(
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    database_url: str,
    server: OpenAICompatibleServer,
    monkeypatch: pytest.MonkeyPatch,
    s3: Any,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    golden = (
        "golden_queries:\n"
        '  - query: "a tent pole cracked"\n'
        "    expected_document_ids: [TCK-7002]\n"
        f'  - query: "refund asked for by {OBJECT_EMAIL}, call {PHONES[0]}"\n'
        "    expected_document_ids: [TCK-7999]\n"
    )
    contract = _openai_variant(
        products_dir, "tickets_golden", lambda text: text.split("golden_queries:")[0] + golden
    )
    land(
        s3,
        contract,
        "0001",
        [
            project_event("upsert", ticket("TCK-7001", 1, "Refund", "The refund went to my card.")),
            project_event("upsert", ticket("TCK-7002", 1, "Tent", "A tent pole cracked.")),
        ],
    )
    sync_all(contract, access, embedder_for)
    instance = dg.DagsterInstance.ephemeral()

    result = dg.materialize(
        [release_asset(contract), golden_queries_check(contract)],
        instance=instance,
        resources={
            "index_store": IndexStore(database_url=database_url),
            "embedding_models": EmbeddingModels(
                openai_api_key="test-key", openai_base_url=server.base_url
            ),
        },
    )

    log = "\n".join(serialize_value(record) for record in instance.all_logs(result.run_id))
    assert "golden_queries" in log
    assert log.count(OBJECT_EMAIL) == 0 and _digits(PHONES[0]) not in _digits(log)
    assert "<EMAIL_ADDRESS>" in log
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == "golden_queries" and not evaluation.passed
    assert evaluation.metadata["missed"].value == [1]
    assert (
        evaluation.metadata["misses"].value
        == "#1: refund asked for by <EMAIL_ADDRESS>, call <PHONE_NUMBER>"
    )
    assert _leaks(json.dumps(server.requests)) == []


def test_an_address_inside_a_path_or_a_longer_word_is_masked() -> None:
    masker = PiiMasker({"EMAIL_ADDRESS": "placeholder"})
    assert masker.text("support_tickets/export-jane.doe@example.com.jsonl") == (
        "support_tickets/<EMAIL_ADDRESS>.jsonl"
    )
    assert masker.text("exports/jane@example.co.uk/part-1.json") == (
        "exports/<EMAIL_ADDRESS>/part-1.json"
    )
    assert masker.text("write to jane@example.com-2026 or jane@example.com.Thanks") == (
        "write to <EMAIL_ADDRESS>-2026 or <EMAIL_ADDRESS>.Thanks"
    )
    assert (
        masker.text("not an address: jane@example.c, x@y") == "not an address: jane@example.c, x@y"
    )
    keyed = masker.value({"by_key": {"a@example.com": 1, "b@example.com": [{"c@example.com": 3}]}})
    assert keyed == {
        "by_key": {"<EMAIL_ADDRESS>": 1, "<EMAIL_ADDRESS>#2": [{"<EMAIL_ADDRESS>": 3}]}
    }


def test_each_masking_is_what_the_contract_declares() -> None:
    line = "Mail ada@example.com, call +1 415-555-0134, card 4111 1111 1111 1111."
    placeholders = PiiMasker({"EMAIL_ADDRESS": "placeholder", "PHONE_NUMBER": "placeholder"})
    assert placeholders.text(line) == (
        "Mail <EMAIL_ADDRESS>, call <PHONE_NUMBER>, card 4111 1111 1111 1111."
    )
    assert PiiMasker({"CREDIT_CARD": "redact"}).text(line) == (
        "Mail ada@example.com, call +1 415-555-0134, card ."
    )
    hashed = PiiMasker({"EMAIL_ADDRESS": "hash"}, hash_key=b"k1")
    first, again = hashed.text("ada@example.com"), hashed.text("Ada@Example.com")
    assert first == again and re.fullmatch(r"<EMAIL_ADDRESS:[0-9a-f]{16}>", first)
    assert PiiMasker({"EMAIL_ADDRESS": "hash"}, hash_key=b"k2").text("ada@example.com") != first
    with pytest.raises(RuntimeError, match="MESH_RAG_PII_HASH_KEY"):
        PiiMasker({"EMAIL_ADDRESS": "hash"})


def test_the_detector_never_touches_the_network(tmp_path: Path) -> None:
    """In a fresh process, with every way out of the machine made to fail and recorded, and no
    cache of the public suffix list anywhere, masking still finds and masks an email."""
    program = textwrap.dedent(
        """
        import json, socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(repr(args[:2]))
            raise OSError("network disabled in this test")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from mesh_rag_pipelines.governance.pii import PiiMasker
        masked = PiiMasker({"EMAIL_ADDRESS": "placeholder"}).text("write to ada@example.co.uk")
        print(json.dumps({"masked": masked, "attempts": attempts}))
        """
    )
    env = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin"}
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
    )
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"masked": "write to <EMAIL_ADDRESS>", "attempts": []}
    assert not (tmp_path / "cache").exists()
