"""`mesh-rag query` and `mesh-rag answer`: retrieval as a caller, through the serving role."""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from dataclasses import asdict
from typing import Any

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.cli.contracts import contract, loaded_contracts


def _request(args: argparse.Namespace) -> Any:
    """The caller and the request the query and answer commands share; a caller identity is
    required: the groups to read as, or the separately configured operator view."""
    from mesh_rag_pipelines.governance.access import InvalidCallerGroup
    from mesh_rag_pipelines.retrieval import OPERATOR, Caller
    from mesh_rag_pipelines.retrieval.request import RetrievalRequest

    if not args.group and not args.operator:
        raise SystemExit(
            "a caller identity is required: --group G (repeatable), or --operator with "
            f"{settings.OPERATOR_DATABASE_URL} set"
        )
    for product in args.product or ():
        contract(product)  # a broken or unknown product is refused by name
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


def _reader(operator: bool) -> Any:
    from mesh_rag_pipelines.connections import operator_engine, serving_engine

    try:
        return operator_engine() if operator else serving_engine()
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from exc


def query(args: argparse.Namespace) -> None:
    from mesh_rag_pipelines.retrieval.request import retrieve

    request = _request(args)
    found = retrieve(_reader(args.operator), loaded_contracts(), request)
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


def answer(args: argparse.Namespace) -> None:
    from mesh_rag_pipelines.retrieval.answer import OpenAIChat
    from mesh_rag_pipelines.retrieval.answer import answer as grounded_answer

    chat = None
    model = os.environ.get(settings.ANSWER_MODEL)
    if model:
        key = os.environ.get(settings.OPENAI_API_KEY)
        if not key:
            raise SystemExit(f"{settings.ANSWER_MODEL} is set: it needs {settings.OPENAI_API_KEY}")
        chat = OpenAIChat(model, key, os.environ.get(settings.OPENAI_BASE_URL))
    result = grounded_answer(_reader(args.operator), loaded_contracts(), _request(args), chat)
    if args.json:
        print(json.dumps(asdict(result), indent=2, default=str))
        return
    if result.abstention:
        print(f"no answer: {result.abstention}")
        return
    print(result.text)
    print(f"\n{'answered by ' + result.model if result.model else 'extracted passages'}; sources:")
    for c in result.citations:
        print(f"  [{c.number}] {c.product}/{c.doc_id} ({c.index_version}, chunk {c.chunk_no})")
