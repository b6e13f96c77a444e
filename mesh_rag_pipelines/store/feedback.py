"""Judgments of the service's responses, and the evaluation queries curated from them.

A caller's judgment is written by the service as the serving role (INSERT only). A negative
judgment naming the results that were right becomes, per product, a *candidate* evaluation
query (the logged query, masked, and those documents); a person accepts or rejects it; accepted
ones join the product's evaluation set, which the release gate scores beside the contract's
golden queries. Nothing enters the gate unreviewed.

Collecting is the owner's and idempotent: one candidate per (judgment, product), however often
it runs. A judgment counts only on a response the query log holds under the judging subject: a
judgment on someone else's response, or on a response not logged (never, or purged by the
retention), proposes nothing, and neither does a right result of a product the response did not
search; each is counted, never silently dropped. A review moves a candidate once, from
`candidate` to `accepted` or `rejected`, and records who (the database role, verified, and who
the caller claims is behind it) and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.orm import Session

from mesh_rag_pipelines.governance.erasure import database_role
from mesh_rag_pipelines.store.schema import EvaluationCandidate, Feedback, QueryLog

Decision = Literal["accepted", "rejected"]
STATUSES = ("candidate", "accepted", "rejected")


def record_feedback(
    engine: Engine,
    response_id: uuid.UUID,
    subject: str,
    helpful: bool,
    right_results: list[str],
    comment: str | None,
) -> None:
    """One judgment; `right_results` are `product/doc_id`, `comment` already masked. Inserted
    inline (no RETURNING, no sequence read first): the serving role may only insert."""
    with engine.begin() as conn:
        conn.execute(
            insert(Feedback)
            .inline()
            .values(
                response_id=response_id,
                subject=subject,
                helpful=helpful,
                right_results=right_results,
                comment=comment,
            )
        )


@dataclass(frozen=True)
class Collection:
    """What one collection did: candidates created, and the judgments and right results that
    proposed nothing, by reason (these are counted again by every collection)."""

    created: int = 0
    unknown_response: int = 0  # judgments on a response the query log does not hold
    other_subject: int = 0  # judgments on a response logged under another subject
    unusable_results: int = 0  # right results not `product/doc_id` of a product searched

    @property
    def ignored(self) -> str:
        parts = [
            (self.unknown_response, "on a response not in the query log"),
            (self.other_subject, "on another caller's response"),
        ]
        judgments = [f"{count} {why}" for count, why in parts if count]
        said = [f"judgments ignored: {', '.join(judgments)}"] if judgments else []
        if self.unusable_results:
            said.append(
                f"{self.unusable_results} right results ignored (not product/doc_id of a "
                "product the response searched)"
            )
        return "; ".join(said)


def collect_candidates(engine: Engine, products: Sequence[str] | None = None) -> Collection:
    """Turn every negative judgment with right results into candidates, one per product its
    right results name (of `products` only, if given), unless that candidate exists already."""
    wanted = set(products) if products is not None else None
    collected = (
        select(func.array_agg(EvaluationCandidate.product))
        .where(EvaluationCandidate.feedback_id == Feedback.id)
        .scalar_subquery()
    )
    judged = (
        select(
            Feedback.id,
            Feedback.subject,
            Feedback.right_results,
            QueryLog.subject.label("logged_subject"),
            QueryLog.query_masked,
            QueryLog.products,
            collected.label("collected"),
        )
        .outerjoin(QueryLog, QueryLog.response_id == Feedback.response_id)
        .where(Feedback.helpful.is_(False), func.cardinality(Feedback.right_results) > 0)
        .order_by(Feedback.id)
    )
    created = unknown = other = unusable = 0
    with engine.begin() as conn:
        for row in conn.execute(judged):
            named = _right_documents(row.right_results)
            if wanted is not None:
                named = {p: docs for p, docs in named.items() if p in wanted}
            pending = {p: docs for p, docs in named.items() if p not in (row.collected or [])}
            if not pending:
                continue
            if row.logged_subject is None:
                unknown += 1
                continue
            if row.logged_subject != row.subject:
                other += 1
                continue
            unusable += sum(len(docs) for p, docs in pending.items() if p not in row.products)
            new = [
                {"feedback_id": row.id, "product": p, "query": row.query_masked,
                 "expected_doc_ids": docs}
                for p, docs in pending.items() if p in row.products
            ]  # fmt: skip
            if new:
                inserted = conn.execute(
                    upsert(EvaluationCandidate)
                    .values(new)
                    .on_conflict_do_nothing(index_elements=["feedback_id", "product"])
                    .returning(EvaluationCandidate.id)
                )
                created += len(inserted.all())
    return Collection(created, unknown, other, unusable)


def _right_documents(right_results: list[str]) -> dict[str, list[str]]:
    """`product/doc_id` entries grouped by product, each document once, in the order given;
    entries that are not `product/doc_id` go whole under the product "", which no response
    searched."""
    named: dict[str, list[str]] = {}
    for entry in right_results:
        product, slash, doc_id = entry.partition("/")
        if not (slash and product and doc_id):
            product, doc_id = "", entry
        docs = named.setdefault(product, [])
        if doc_id not in docs:
            docs.append(doc_id)
    return named


@dataclass(frozen=True)
class EvaluationQuery:
    """An accepted candidate: a query of the product's evaluation set."""

    candidate_id: int
    query: str
    expected_doc_ids: list[str]


@dataclass(frozen=True)
class Candidate:
    """A candidate as a reviewer sees it: the query, the documents marked right, who judged
    the response (the verified subject the service logged) and where its review stands."""

    id: int
    product: str
    query: str
    expected_doc_ids: list[str]
    subject: str
    created_at: datetime
    status: str
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_reason: str | None


def list_candidates(
    engine: Engine,
    products: Sequence[str] | None = None,
    statuses: Sequence[str] = ("candidate",),
) -> list[Candidate]:
    """Candidates of `products` (all if None) in `statuses`, oldest first."""
    unknown = sorted(set(statuses) - set(STATUSES))
    if unknown:
        raise ValueError(f"no candidate status {', '.join(unknown)}: one of {', '.join(STATUSES)}")
    c = EvaluationCandidate
    query = (
        select(
            c.id, c.product, c.query, c.expected_doc_ids, Feedback.subject, c.created_at,
            c.status, c.reviewed_by, c.reviewed_at, c.review_reason,
        )
        .join(Feedback, Feedback.id == c.feedback_id)
        .where(c.status.in_(statuses))
        .order_by(c.id)
    )  # fmt: skip
    if products is not None:
        query = query.where(c.product.in_(products))
    with engine.connect() as conn:
        return [Candidate(**row._asdict()) for row in conn.execute(query)]


def newest_uncollected(engine: Engine, product: str) -> int | None:
    """The newest negative judgment naming a right result of `product` that has no candidate
    of it yet, if any: whether a collection of `product` may find work. A judgment a
    collection ignores (see `Collection`) stays uncollected, so this names it until a newer
    one comes."""
    collected = select(EvaluationCandidate.id).where(
        EvaluationCandidate.feedback_id == Feedback.id, EvaluationCandidate.product == product
    )
    query = (
        select(Feedback.id, Feedback.right_results)
        .where(
            Feedback.helpful.is_(False),
            func.cardinality(Feedback.right_results) > 0,
            ~collected.exists(),
        )
        .order_by(Feedback.id.desc())
    )
    with engine.connect() as conn:
        for row in conn.execute(query):
            if product in _right_documents(row.right_results):
                return int(row.id)
    return None


def evaluation_set(engine: Engine, product: str) -> list[EvaluationQuery]:
    """The product's accepted candidates, in the order they were proposed."""
    query = (
        select(
            EvaluationCandidate.id, EvaluationCandidate.query, EvaluationCandidate.expected_doc_ids
        )
        .where(EvaluationCandidate.product == product, EvaluationCandidate.status == "accepted")
        .order_by(EvaluationCandidate.id)
    )
    with engine.connect() as conn:
        return [
            EvaluationQuery(r.id, r.query, list(r.expected_doc_ids)) for r in conn.execute(query)
        ]


def _utc(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if moment else "an unknown time"


class ReviewError(ValueError):
    """A review that cannot be made as asked; nothing was reviewed."""


def review(
    engine: Engine,
    candidate_ids: Sequence[int],
    decision: Decision,
    *,
    claimed_reviewer: str,
    reason: str | None = None,
    product: str | None = None,
) -> list[EvaluationCandidate]:
    """Accept or reject candidates, all or none: every id must name a candidate (of `product`,
    if given) still waiting for review. Recorded: the decision, the database role the review
    runs as beside `claimed_reviewer` (who the caller says decides: never verified), the reason
    and the time."""
    if decision not in ("accepted", "rejected"):
        raise ReviewError(f"a review accepts or rejects, not {decision!r}")
    ids = list(dict.fromkeys(candidate_ids))
    if not ids:
        raise ReviewError("no candidate to review: name at least one id")
    with Session(engine) as session, session.begin():
        found = {
            c.id: c
            for c in session.scalars(
                select(EvaluationCandidate).where(EvaluationCandidate.id.in_(ids)).with_for_update()
            )
        }
        problems = []
        for candidate_id in ids:
            candidate = found.get(candidate_id)
            if candidate is None:
                problems.append(f"no evaluation candidate {candidate_id}")
            elif product is not None and candidate.product != product:
                problems.append(
                    f"candidate {candidate_id} is of product {candidate.product}, not {product}"
                )
            elif candidate.status != "candidate":
                problems.append(
                    f"candidate {candidate_id} was already {candidate.status} by "
                    f"{candidate.reviewed_by} at {_utc(candidate.reviewed_at)}"
                )
        if problems:
            raise ReviewError(f"nothing reviewed: {'; '.join(problems)}")
        role = database_role(session.connection())
        claimed = claimed_reviewer.strip() or "nobody claimed"
        session.execute(
            update(EvaluationCandidate)
            .where(EvaluationCandidate.id.in_(ids))
            .values(
                status=decision,
                reviewed_by=f"{role} (claimed: {claimed})",
                reviewed_at=func.now(),
                review_reason=reason,
            )
            .execution_options(synchronize_session=False)
        )
        session.flush()
        reviewed = [found[candidate_id] for candidate_id in ids]
        for candidate in reviewed:
            session.refresh(candidate)
        session.expunge_all()
    return reviewed
