"""The `/v1` routes: search, answer, the caller's catalog, and feedback.

Every route takes the caller's groups from the verified identity only. Search and answer are
logged (store.query_log) after the response is sent, with the query masked like documents are;
a request that fails is logged with its status too.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.governance.access import InvalidCallerGroup
from mesh_rag_pipelines.governance.pii import query_masker
from mesh_rag_pipelines.retrieval.answer import answer as grounded_answer
from mesh_rag_pipelines.retrieval.request import RetrievalRequest, retrieve, select_products
from mesh_rag_pipelines.retrieval.search import Caller, SearchTimings
from mesh_rag_pipelines.service.identity import Identity
from mesh_rag_pipelines.service.schemas import (
    AnswerResponse,
    CitationOut,
    FeedbackRequest,
    FeedbackResponse,
    Problem,
    ProductOut,
    ProductsResponse,
    ProductStatusOut,
    SearchHit,
    SearchRequest,
    SearchResponse,
)
from mesh_rag_pipelines.service.state import ServiceState
from mesh_rag_pipelines.store.feedback import record_feedback
from mesh_rag_pipelines.store.index_versions import live_versions
from mesh_rag_pipelines.store.product_status import product_statuses
from mesh_rag_pipelines.store.query_log import LoggedRequest, record_request

REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no valid bearer token"}
}
router = APIRouter(prefix="/v1", tags=["v1"], responses=REFUSED)


def service(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def identify(request: Request) -> Identity:
    """The verified caller (a refusal becomes 401 with WWW-Authenticate: Bearer)."""
    return service(request).authenticator.identify(request.headers.get("authorization"))


Caller_ = Annotated[Identity, Depends(identify)]
State = Annotated[ServiceState, Depends(service)]


def _caller(identity: Identity) -> Caller:
    try:
        return Caller.of(identity.groups)
    except InvalidCallerGroup as exc:
        raise HTTPException(403, f"the token's groups are refused: {exc}") from None


def _retrieval_request(body: SearchRequest, identity: Identity) -> RetrievalRequest:
    return RetrievalRequest(
        query=body.query,
        caller=_caller(identity),
        k=body.k,
        unit=body.unit,
        products=tuple(body.products),
        domains=tuple(body.domains),
        document_types=tuple(body.types),
        tags=tuple(body.tags),
    )


class _Logged:
    """One search or answer request, timed, written to the query log once it is answered."""

    def __init__(self, state: ServiceState, identity: Identity, route: str, body: SearchRequest):
        self.state, self.identity, self.route, self.body = state, identity, route, body
        self.started = time.perf_counter()
        self.response_id = uuid.uuid4()
        self.timings = SearchTimings()

    def entry(
        self,
        products: list[str],
        result_ids: list[str],
        abstention: str | None,
        status: int,
        total_ms: float,
    ) -> LoggedRequest:
        masker = query_masker(self.state.contracts_named(products))
        served = bool(self.timings.index_versions)
        return LoggedRequest(
            response_id=self.response_id,
            subject=self.identity.subject,
            identity_kind=self.identity.kind,
            route=self.route,
            query_masked=masker.text(self.body.query),
            products=products,
            index_versions=self.timings.index_versions,
            k=self.body.k,
            unit=self.body.unit,
            embed_ms=self.timings.embed_ms if served else None,
            search_ms=self.timings.search_ms if served else None,
            total_ms=total_ms,
            result_ids=result_ids,
            abstention=abstention,
            status=status,
        )

    def answered(
        self,
        request: Request,
        background: BackgroundTasks,
        products: list[str],
        result_ids: list[str],
        abstention: str | None,
    ) -> None:
        """Logged after the response is sent (masking the query is the log's cost, not the
        caller's)."""
        request.state.products, request.state.abstention = products, abstention
        total_ms = self._elapsed_ms()

        def log() -> None:
            record_request(
                self.state.serving, self.entry(products, result_ids, abstention, 200, total_ms)
            )

        background.add_task(log)

    def failed(self) -> None:
        """Logged at once: a failed request sends no response to run background tasks after."""
        # The store may be why it failed; the original error is what is raised.
        with contextlib.suppress(Exception):
            record_request(self.state.serving, self.entry([], [], None, 500, self._elapsed_ms()))

    def _elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


@router.post("/search", response_model=SearchResponse)
def search(
    body: SearchRequest,
    request: Request,
    background: BackgroundTasks,
    identity: Caller_,
    state: State,
) -> SearchResponse:
    """The passages (chunks, or the best chunk of each document) the caller may read, best
    first, with their provenance; or an abstention saying why nothing qualifies."""
    logged = _Logged(state, identity, "search", body)
    asked = _retrieval_request(body, identity)
    try:
        found = retrieve(state.serving, state.contracts, asked, state.embedders, logged.timings)
    except Exception:
        logged.failed()
        raise
    ids = [f"{h.product}/{h.doc_id}#{h.chunk_no}" for h in found.hits]
    logged.answered(request, background, found.products, ids, found.abstention)
    return SearchResponse(
        response_id=logged.response_id,
        products=found.products,
        results=[SearchHit.model_validate(h, from_attributes=True) for h in found.hits],
        abstention=found.abstention,
    )


@router.post("/answer", response_model=AnswerResponse)
def answer(
    body: SearchRequest,
    request: Request,
    background: BackgroundTasks,
    identity: Caller_,
    state: State,
) -> AnswerResponse:
    """A grounded answer citing the passages it used; with no qualifying passage, an abstention
    and no model call. Without a configured chat model the answer is the passages themselves."""
    logged = _Logged(state, identity, "answer", body)
    asked = _retrieval_request(body, identity)
    chosen, _ = select_products(state.contracts, asked)
    products = [c.name for c in chosen]
    try:
        result = grounded_answer(
            state.serving, state.contracts, asked, state.chat, state.embedders, logged.timings
        )
    except Exception:
        logged.failed()
        raise
    ids = [f"{c.product}/{c.doc_id}#{c.chunk_no}" for c in result.citations]
    logged.answered(request, background, products, ids, result.abstention)
    return AnswerResponse(
        response_id=logged.response_id,
        products=products,
        text=result.text,
        citations=[CitationOut.model_validate(c, from_attributes=True) for c in result.citations],
        model=result.model,
        abstention=result.abstention,
    )


@router.get("/products", response_model=ProductsResponse)
def products(identity: Caller_, state: State) -> ProductsResponse:
    """The data products shared with the caller's groups: who owns each, what it holds, its
    freshness SLA, the index version serving it, and whether it is in sync or what waits."""
    readable = _readable(state, identity)
    names = [c.name for c in readable]
    live = {v.product: v.id for v in live_versions(state.serving, names)} if names else {}
    statuses = product_statuses(state.serving, names) if names else {}
    return ProductsResponse(
        products=[
            ProductOut(
                name=c.name,
                domain=c.domain,
                owner=c.owner,
                description=c.description,
                document_type=c.document_type,
                tags=list(c.tags),
                freshness_sla=c.freshness.sla,
                live_index_version=live.get(c.name),
                status=_status(statuses.get(c.name)),
            )
            for c in readable
        ]
    )


def _readable(state: ServiceState, identity: Identity) -> list[DataProductContract]:
    """The products shared with the caller's groups."""
    groups = set(_caller(identity).groups)
    return [c for c in state.contracts if groups & set(c.acl_groups)]


def _names_a_result(entry: str, products: tuple[str, ...]) -> bool:
    """`product/doc_id` of one of `products`."""
    product, slash, doc_id = entry.partition("/")
    return bool(slash and doc_id) and product in products


def _status(found: object | None) -> ProductStatusOut | None:
    if found is None:
        return None
    return ProductStatusOut.model_validate(found, from_attributes=True)


@router.post("/feedback", response_model=FeedbackResponse)
def feedback(body: FeedbackRequest, identity: Caller_, state: State) -> FeedbackResponse:
    """A judgment on a response: helpful or not, and which results (`product/doc_id`) were the
    right ones. Recorded under the verified caller; whether the response was that caller's,
    and searched the products named, is checked where judgments are used (collecting evaluation
    candidates reads the query log), so a judgment counts whichever process gave the response,
    before or after a restart, and one on another caller's response proposes nothing."""
    readable = tuple(c.name for c in _readable(state, identity))
    wrong = [entry for entry in body.right_results if not _names_a_result(entry, readable)]
    if wrong:
        raise HTTPException(
            422,
            f"right_results must be product/doc_id of a product the caller may read "
            f"{list(readable)}; not {wrong}",
        )
    comment = query_masker(state.contracts).text(body.comment) if body.comment else None
    record_feedback(
        state.serving,
        body.response_id,
        identity.subject,
        body.helpful,
        list(dict.fromkeys(body.right_results)),
        comment,
    )
    return FeedbackResponse(recorded=True)
