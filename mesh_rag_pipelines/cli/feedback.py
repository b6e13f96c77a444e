"""`mesh-rag feedback`: review evaluation queries proposed by callers' negative feedback.

`list` collects new candidates first (from the judgments and the query log), then shows the
queue; `accept` and `reject` decide on candidates by id, all or none. Accepted candidates join
their product's evaluation set, which the next `mesh-rag release validate` scores."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from mesh_rag_pipelines.cli.session import Session, claimed_os_user
from mesh_rag_pipelines.store.feedback import (
    STATUSES,
    Candidate,
    Decision,
    ReviewError,
    collect_candidates,
    list_candidates,
    review,
)


def feedback(session: Session, args: argparse.Namespace) -> None:
    if args.action == "list":
        _refuse(args, ids=args.candidate_ids, reason=args.reason)
        listing(session, args.product, reviewed_too=args.all)
    else:
        _refuse(args, all_=args.all)
        decide(session, args.action, args.candidate_ids, args.reason, args.product)


def _refuse(args: argparse.Namespace, **given: object) -> None:
    """Options that mean nothing to this action are refused, never ignored."""
    options = {"ids": "--id", "reason": "--reason", "all_": "--all"}
    named = [options[name] for name, value in given.items() if value]
    if named:
        raise SystemExit(f"mesh-rag feedback {args.action}: {', '.join(named)} is not for it")


def listing(session: Session, products: list[str] | None, reviewed_too: bool) -> None:
    """Collect candidates from new negative judgments, then show the review queue."""
    from mesh_rag_pipelines.connections import store_engine

    for product in products or []:
        session.contract(product)  # an unknown product is refused, naming the known ones
    engine = store_engine(session.settings)
    collected = collect_candidates(engine, products)
    print(f"{collected.created} new candidates collected")
    if collected.ignored:
        print(collected.ignored)
    statuses = STATUSES if reviewed_too else ("candidate",)
    candidates = list_candidates(engine, products, statuses)
    for candidate in candidates:
        print(_shown(candidate))
    waiting = sum(c.status == "candidate" for c in candidates)
    shown = f" ({len(candidates)} listed)" if reviewed_too else ""
    print(f"{waiting} candidates waiting for review{shown}")


def _shown(c: Candidate) -> str:
    lines = [
        f"#{c.id}  {c.product}  {c.status}  {_utc(c.created_at)}  judged by {c.subject}",
        f"    query: {c.query}",
        f"    right documents: {', '.join(c.expected_doc_ids)}",
    ]
    if c.status != "candidate":
        why = f": {c.review_reason}" if c.review_reason else ""
        lines.append(f"    {c.status} by {c.reviewed_by} at {_utc(c.reviewed_at)}{why}")
    return "\n".join(lines)


def _utc(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if moment else "an unknown time"


def decide(
    session: Session,
    action: str,
    candidate_ids: list[int] | None,
    reason: str | None,
    products: list[str] | None,
) -> None:
    """Accept or reject the named candidates, all or none."""
    from mesh_rag_pipelines.connections import store_engine

    if not candidate_ids:
        raise SystemExit(f"mesh-rag feedback {action}: name the candidates with --id (repeatable)")
    if action == "reject" and not (reason and reason.strip()):
        raise SystemExit("mesh-rag feedback reject: --reason is required (why the query is wrong)")
    if products and len(products) > 1:
        raise SystemExit(f"mesh-rag feedback {action}: at most one --product")
    product = products[0] if products else None
    if product is not None:
        session.contract(product)
    decision: Decision = "accepted" if action == "accept" else "rejected"
    try:
        reviewed = review(
            store_engine(session.settings),
            candidate_ids,
            decision,
            claimed_reviewer=claimed_os_user("feedback"),
            reason=reason,
            product=product,
        )
    except ReviewError as exc:
        raise SystemExit(f"mesh-rag feedback {action}: {exc}") from None
    for candidate in reviewed:
        print(f"#{candidate.id}  {candidate.product}  {candidate.status}: {candidate.query}")
    by = reviewed[0].reviewed_by
    where = (
        "they join their products' evaluation sets, scored by the next release validation"
        if decision == "accepted"
        else "they never enter a release gate"
    )
    print(f"{len(reviewed)} candidates {decision}, recorded as {by}; {where}")
