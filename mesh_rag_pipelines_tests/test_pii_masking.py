"""PII is masked before anything is stored or sent: free text, titles, metadata at any depth,
document state, chunks, index rows, quarantine copies, and every request to an embedding or
answering endpoint. The detector (Presidio's pattern recognizers, no NLP model) runs offline."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract, load_contract
from mesh_rag_pipelines.embedding import embedder_for
from mesh_rag_pipelines.governance.pii import PiiMasker
from mesh_rag_pipelines.pipeline import SourceAccess, build_product
from mesh_rag_pipelines.retrieval import Caller
from mesh_rag_pipelines.retrieval.answer import OpenAIChat, answer
from mesh_rag_pipelines.retrieval.request import RetrievalRequest
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.landing import contract_variant, land, project_event, ticket
from mesh_rag_pipelines_tests.openai_compatible_server import OpenAICompatibleServer

EMAILS = [f"customer.{n}@mail-{n}.example.com" for n in range(20)]
PHONES = [f"+1 415-555-01{n:02d}" for n in range(20)]
CARDS = ["4111 1111 1111 1111", "5500-0000-0000-0004", "4012888888881881", "3782 822463 10005"]
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
            product_area={"name": "tents", "contact_email": EMAILS[n], "note": f"cc {EMAILS[n]}"},
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
    found = [email for email in EMAILS if email in haystack]
    return found + [n for n in [*PHONES, *CARDS] if n in haystack or _digits(n) in digits]


def test_no_pii_reaches_any_table_or_any_request(
    masked_tickets: DataProductContract,
    access: SourceAccess,
    engine: Engine,
    server: OpenAICompatibleServer,
    monkeypatch: pytest.MonkeyPatch,
    s3: Any,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    records = _tickets()
    broken = json.dumps({"op": "upsert", "data": {**records[0], "version": "soon"}})
    land(s3, masked_tickets, "0001", [*(project_event("upsert", r) for r in records), broken])

    build_product(masked_tickets, access, embedder_for)
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
    with engine.connect() as conn:
        raw = conn.execute(text(f"SELECT raw FROM {SCHEMA}.quarantine")).scalar_one()
    assert raw is not None and "<EMAIL_ADDRESS>" in raw


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
