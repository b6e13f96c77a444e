"""`mesh-rag query` and `mesh-rag answer`: retrieval as a caller, through the serving role."""

from __future__ import annotations

import argparse
import json
import textwrap
import urllib.error
import urllib.request
from dataclasses import asdict
from types import SimpleNamespace
from typing import Any

from mesh_rag_pipelines.cli.session import Session
from mesh_rag_pipelines.settings import (
    ANSWER_MODEL,
    OPENAI_API_KEY,
    OPENAI_BASE_URL,
    OPERATOR_DATABASE_URL,
    SERVICE_TOKEN,
    SERVICE_URL,
)


def _request(session: Session, args: argparse.Namespace) -> Any:
    """The caller and the request the query and answer commands share; a caller identity is
    required: the groups to read as, or the separately configured operator view."""
    from mesh_rag_pipelines.governance.access import InvalidCallerGroup
    from mesh_rag_pipelines.retrieval import OPERATOR, Caller
    from mesh_rag_pipelines.retrieval.request import RetrievalRequest

    if not args.group and not args.operator:
        raise SystemExit(
            "a caller identity is required: --group G (repeatable), or --operator with "
            f"{OPERATOR_DATABASE_URL} set"
        )
    for product in args.product or ():
        session.contract(product)  # a broken or unknown product is refused by name
    try:
        caller = OPERATOR if args.operator else Caller.of(args.group)
    except InvalidCallerGroup as exc:
        raise SystemExit(str(exc)) from None
    return RetrievalRequest(
        query=args.text,
        caller=caller,
        k=args.k,
        unit="documents" if args.documents else "chunks",
        products=tuple(args.product or ()),
        domains=tuple(args.domain or ()),
        document_types=tuple(args.type or ()),
        tags=tuple(args.tag or ()),
    )


def _reader(session: Session, operator: bool) -> Any:
    from mesh_rag_pipelines.connections import operator_engine, serving_engine

    try:
        return operator_engine(session.settings) if operator else serving_engine(session.settings)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from exc


def _through_service(session: Session, args: argparse.Namespace, route: str) -> Any:
    """The service's reply when one is configured (MESH_RAG_SERVICE_URL), else None. The caller
    is then the identity of the service token: groups are not the command line's to choose."""
    base = session.settings.get(SERVICE_URL)
    if not base:
        return None
    if args.group or args.operator:
        raise SystemExit(
            f"{SERVICE_URL} is set: the caller is who {SERVICE_TOKEN} says, verified by the "
            "service; --group and --operator apply only to the store read directly"
        )
    token = session.settings.required(SERVICE_TOKEN, "a bearer token for the retrieval service")
    body = {
        "query": args.text,
        "products": args.product or [],
        "domains": args.domain or [],
        "types": args.type or [],
        "tags": args.tag or [],
        "k": args.k,
        "unit": "documents" if args.documents else "chunks",
    }
    request = urllib.request.Request(
        f"{base.rstrip('/')}/v1/{route}",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return json.load(reply)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise SystemExit(f"{base}: {exc.code} {exc.reason}: {detail}") from None
    except OSError as exc:
        raise SystemExit(f"{base}: {exc}") from None


def query(session: Session, args: argparse.Namespace) -> None:
    from mesh_rag_pipelines.retrieval.request import retrieve

    served = _through_service(session, args, "search")
    found: Any
    if served is not None:
        found = SimpleNamespace(
            products=served["products"],
            abstention=served["abstention"],
            hits=[SimpleNamespace(**hit) for hit in served["results"]],
        )
    else:
        request = _request(session, args)
        found = retrieve(_reader(session, args.operator), session.contracts(), request)
    if args.json:
        print(
            json.dumps(
                {
                    "query": args.text,
                    "products": found.products,
                    "abstention": found.abstention,
                    "hits": [_hit_json(h) for h in found.hits],
                },
                indent=2,
                default=str,
            )
        )
        return
    print(f"query: {args.text}")
    if found.abstention:
        print(f"  no answer: {found.abstention}")
    for rank, hit in enumerate(found.hits, start=1):
        body = hit.text.split("\n\n", 1)[-1]
        shown = body if args.full else textwrap.shorten(body, 300)
        print(
            f"{rank:>3}. {hit.score:.3f}  {hit.product}/{hit.doc_id} v{hit.doc_version} "
            f"chunk {hit.chunk_no}  [{hit.section or hit.title or ''}]\n"
            + textwrap.indent(textwrap.fill(shown, 96), "       ")
        )


def _hit_json(hit: Any) -> dict[str, Any]:
    return {
        "product": hit.product,
        "doc_id": hit.doc_id,
        "doc_version": hit.doc_version,
        "chunk_no": hit.chunk_no,
        "index_version": hit.index_version,
        "score": round(hit.score, 6),
        "title": hit.title,
        "section": hit.section,
        "text": hit.text,
        "metadata": hit.metadata,
        "source_updated_at": hit.source_updated_at,
    }


def answer(session: Session, args: argparse.Namespace) -> None:
    served = _through_service(session, args, "answer")
    if served is not None:
        _print_answer(served, args.json)
        return
    from mesh_rag_pipelines.retrieval.answer import OpenAIChat
    from mesh_rag_pipelines.retrieval.answer import answer as grounded_answer

    chat = None
    model = session.settings.get(ANSWER_MODEL)
    if model:
        key = session.settings.get(OPENAI_API_KEY)
        if not key:
            raise SystemExit(f"{ANSWER_MODEL} is set: it needs {OPENAI_API_KEY}")
        chat = OpenAIChat(model, key, session.settings.get(OPENAI_BASE_URL))
    result = grounded_answer(
        _reader(session, args.operator), session.contracts(), _request(session, args), chat
    )
    _print_answer(asdict(result), args.json)


def _print_answer(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    if result["abstention"]:
        print(f"no answer: {result['abstention']}")
        return
    print(result["text"])
    model = result["model"]
    print(f"\n{'answered by ' + model if model else 'extracted passages'}; sources:")
    for c in result["citations"]:
        print(
            f"  [{c['number']}] {c['product']}/{c['doc_id']} ({c['index_version']}, "
            f"chunk {c['chunk_no']})"
        )
