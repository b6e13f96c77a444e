"""How a product was served over a time window, from the retrieval service's query log and the
judgments of its responses: what the product's monitoring asset records every hour.

A logged request counts for every product it searched (each name in its `products`), so a
request over two products counts once for each. The window is half-open, [start, end), on the
time the row was written; a judgment counts in the window it was made in, so that every
judgment is counted once over consecutive windows even when it comes after its response's
window closed. Read as the store's owner: the serving role may write these tables, never read
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, func, select

from mesh_rag_pipelines.store.schema import Feedback, QueryLog

# A response with this HTTP status or above was an error, not an answer.
ERROR_STATUS = 400


@dataclass(frozen=True)
class ServingStats:
    """One product's requests in a window; every rate is 0.0 when its denominator is 0, and
    the latencies are 0.0 when there was no request.

    - `queries`: requests logged that searched the product, errors included.
    - `errors`: those answered with an HTTP status of 400 or above.
    - `p50_ms`, `p99_ms`: percentiles of the requests' total time (`total_ms`, query embedding
      included), interpolated between neighbouring values (PostgreSQL's `percentile_cont`).
    - `abstention_rate`: requests that abstained (a reason logged) over `queries`.
    - `empty_result_rate`: requests answered (status below 400) without abstaining but with no
      result at all, over `queries`.
    - `judgments`: responses judged in the window (a response judged more than once in the
      window counts once, by its latest judgment).
    - `negative_feedback_rate`: of those, the ones judged not helpful, over `judgments`.
    """

    product: str
    start: datetime
    end: datetime
    queries: int
    errors: int
    p50_ms: float
    p99_ms: float
    abstention_rate: float
    empty_result_rate: float
    judgments: int
    negative_feedback_rate: float


def serving_stats(engine: Engine, product: str, start: datetime, end: datetime) -> ServingStats:
    """`product`'s requests logged in [start, end), and the judgments made in it."""
    searched = QueryLog.products.contains([product])
    answered_empty = and_(
        QueryLog.status < ERROR_STATUS,
        QueryLog.abstention.is_(None),
        func.cardinality(QueryLog.result_ids) == 0,
    )
    requests = select(
        func.count().label("queries"),
        func.count().filter(QueryLog.status >= ERROR_STATUS).label("errors"),
        func.count().filter(QueryLog.abstention.is_not(None)).label("abstentions"),
        func.count().filter(answered_empty).label("empty"),
        func.percentile_cont(0.5).within_group(QueryLog.total_ms).label("p50"),
        func.percentile_cont(0.99).within_group(QueryLog.total_ms).label("p99"),
    ).where(searched, QueryLog.at >= start, QueryLog.at < end)
    latest_judgments = (
        select(Feedback.response_id, Feedback.helpful)
        .distinct(Feedback.response_id)
        .join(QueryLog, QueryLog.response_id == Feedback.response_id)
        .where(searched, Feedback.at >= start, Feedback.at < end)
        .order_by(Feedback.response_id, Feedback.at.desc(), Feedback.id.desc())
        .subquery()
    )
    judgments = select(
        func.count().label("judged"),
        func.count().filter(~latest_judgments.c.helpful).label("negative"),
    ).select_from(latest_judgments)
    with engine.connect() as conn:
        logged = conn.execute(requests).one()
        judged = conn.execute(judgments).one()
    return ServingStats(
        product=product,
        start=start,
        end=end,
        queries=logged.queries,
        errors=logged.errors,
        p50_ms=float(logged.p50 or 0.0),
        p99_ms=float(logged.p99 or 0.0),
        abstention_rate=_share(logged.abstentions, logged.queries),
        empty_result_rate=_share(logged.empty, logged.queries),
        judgments=judged.judged,
        negative_feedback_rate=_share(judged.negative, judged.judged),
    )


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
