"""PII masking with Presidio, fully offline.

The analyzer runs Presidio's model-free NLP engine (`NoOpNlpEngine`, so no spaCy model is
loaded or downloaded) with its pattern and checksum recognizers only. The email recognizer
validates domains against the public suffix list that ships inside `tldextract`, never the
network: Presidio's stock recognizer would fetch the list first.

A contract's `pii_masking` maps entity types to how they are masked: `redact` (removed),
`placeholder` (`<EMAIL_ADDRESS>`), or `hash` (`<EMAIL_ADDRESS:1f3a...>`, a keyed HMAC-SHA256 of
the value, so equal values stay joinable without being readable; the key is
MESH_RAG_PII_HASH_KEY). Masking happens where a record becomes a document, so nothing
downstream (document state, chunks, index rows, quarantine copies, requests to embedding and
answering endpoints) ever holds the original: text, title, and metadata values and keys at any
depth.

Beyond a contract's records, each surface has its own rule:
- queries and questions: masked (placeholders) with the platform's default types
  (`QUERY_ENTITIES`) plus every type a searched product masks, before they reach a model;
- landing-zone object keys (the landing ledger, quarantine references): masked with every type
  but URL (`object_key_masker`), whatever the contract, since the ledger is shared code that
  knows no contract; a key is identified by its masked form and its etag;
- document ids: an id holding a type the contract masks is refused (`pii_in_id`), since ids
  are stored, shown and joined unmasked.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import sys
from collections.abc import Mapping, Sequence
from functools import cache, cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from mesh_rag_pipelines.contracts.fields import PII_ENTITIES

if TYPE_CHECKING:
    from mesh_rag_pipelines.contracts import DataProductContract

# Phone numbers written without a country code are parsed as numbers of these regions.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IE", "CA", "AU", "IN")
# What every query and question is masked for, whatever the products searched mask.
QUERY_ENTITIES = ("CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "PHONE_NUMBER", "US_SSN")
# What an object key is masked for: every type but URL, which matches most file names
# (`travel.md`: .md is a country's domain).
OBJECT_KEY_ENTITIES = tuple(entity for entity in PII_ENTITIES if entity != "URL")
logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)


# Presidio imports these only to offer NLP engines this project never runs (it uses the
# model-free engine); importing them takes seconds, a query's whole budget.
_UNUSED_BY_PRESIDIO = ("torch", "transformers")


@cache
def _load_presidio() -> None:
    """Import Presidio with PyTorch and transformers reading as absent (unless a model already
    imported them); imported later, they load as usual, and Presidio never asks for them."""
    blocked = [name for name in _UNUSED_BY_PRESIDIO if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import presidio_analyzer  # noqa: F401
        import presidio_anonymizer  # noqa: F401
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


@cache
def _analyzer() -> Any:
    _load_presidio()
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
        UsSsnRecognizer,
    )

    suffixes = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):  # type: ignore[misc]
        """The stock recognizer, with the bundled suffix list instead of a download, judging
        the domain alone and trimming the match to the address.

        The stock pattern lets the match run on past the domain (`jane@example.com.jsonl`,
        `jane@example.com-2026`) and back over a path (`exports/jane@example.com`), and the
        stock check then refuses the whole match, so the address went unmasked. Here the
        local part starts after the last `/`, the domain ends at the longest prefix (cut at
        `.`, `-` or `_`) that is a domain under a public suffix, and only that is reported.
        """

        def validate_result(self, pattern_text: str) -> None:
            return None  # judged, and trimmed, in analyze

        def analyze(
            self,
            text: str,
            entities: list[str],
            nlp_artifacts: Any = None,
            regex_flags: int | None = None,
        ) -> list[Any]:
            found = []
            for result in super().analyze(text, entities, nlp_artifacts, regex_flags):
                span = _address_within(text[result.start : result.end], suffixes)
                if span is None:
                    continue
                result.start, result.end = result.start + span[0], result.start + span[1]
                result.score = self.MAX_SCORE
                found.append(result)
            return found

    registry = RecognizerRegistry(supported_languages=["en"])
    recognizers = [
        OfflineEmailRecognizer(),
        PhoneRecognizer(supported_regions=PHONE_REGIONS),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        UrlRecognizer(),
    ]
    for recognizer in recognizers:
        registry.add_recognizer(recognizer)
    engine = AnalyzerEngine(
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}]),
        registry=registry,
        supported_languages=["en"],
        default_score_threshold=0.0,
    )
    assert set(engine.get_supported_entities("en")) == set(PII_ENTITIES)
    return engine


def _address_within(match: str, suffixes: Any) -> tuple[int, int] | None:
    """The span of the email address inside what the stock pattern matched, or None."""
    local, at, domain = match.partition("@")
    start = local.rfind("/") + 1
    if not at or start >= len(local):
        return None
    ends = sorted({i for i, char in enumerate(domain) if char in ".-_"} | {len(domain)})
    for end in reversed(ends):
        candidate = domain[:end]
        parts = suffixes(candidate)
        if parts.domain and parts.suffix and len(parts.fqdn) == len(candidate):
            return start, len(local) + 1 + end
    return None


@cache
def _anonymizer() -> Any:
    _load_presidio()
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()


class PiiMasker:
    """Masks the entity types a contract declares, in text and in values at any depth."""

    def __init__(self, masking: Mapping[str, str], hash_key: bytes | None = None):
        if "hash" in masking.values() and not hash_key:
            raise RuntimeError(
                "pii_masking uses 'hash', which needs a secret key: set MESH_RAG_PII_HASH_KEY"
            )
        self._entities = sorted(masking)
        self._masking, self._hash_key = dict(masking), hash_key

    @cached_property
    def _operators(self) -> dict[str, Any]:
        # Built on the first text that may hold an entity: Presidio's import takes seconds.
        _load_presidio()
        return {
            entity: self._operator(entity, how, self._hash_key)
            for entity, how in self._masking.items()
        }

    @staticmethod
    def _operator(entity: str, how: str, key: bytes | None) -> Any:
        from presidio_anonymizer.entities import OperatorConfig

        if how == "redact":
            return OperatorConfig("redact", {})
        if how == "placeholder":
            return OperatorConfig("replace", {"new_value": f"<{entity}>"})
        assert key is not None

        def keyed(value: str) -> str:
            digest = hmac.new(key, value.strip().lower().encode(), hashlib.sha256).hexdigest()
            return f"<{entity}:{digest[:16]}>"

        return OperatorConfig("custom", {"lambda": keyed})

    def text(self, value: str) -> str:
        if not self._entities or not value or not could_hold(value, self._entities):
            return value
        _load_presidio()
        from presidio_anonymizer.entities import ConflictResolutionStrategy

        found = _analyzer().analyze(text=value, language="en", entities=self._entities)
        if not found:
            return value
        masked = _anonymizer().anonymize(
            text=value,
            analyzer_results=found,
            operators=self._operators,
            conflict_resolution=ConflictResolutionStrategy.REMOVE_INTERSECTIONS,
        )
        return str(masked.text)

    def value(self, value: Any) -> Any:
        """Strings masked at any depth of dicts and lists, keys as well as values; other values
        as they are. Keys that mask alike (`<EMAIL_ADDRESS>`) are kept apart by a suffix
        (`<EMAIL_ADDRESS>#2`), in the record's order."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            masked: dict[Any, Any] = {}
            for key, item in value.items():
                name = self.text(key) if isinstance(key, str) else key
                if name in masked:
                    taken = (f"{name}#{n}" for n in range(2, len(value) + 2))
                    name = next(alias for alias in taken if alias not in masked)
                masked[name] = self.value(item)
            return masked
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def found(self, value: str) -> list[tuple[str, str]]:
        """(entity type, matched text) of each entity of the masked types in `value`."""
        if not self._entities or not value or not could_hold(value, self._entities):
            return []
        results = _analyzer().analyze(text=value, language="en", entities=self._entities)
        return [(r.entity_type, value[r.start : r.end]) for r in results]


def could_hold(value: str, entities: Sequence[str]) -> bool:
    """Whether `value` may hold one of `entities` at all: every type needs an "@", a digit or
    (IPv6) a ":", and URL a "." (a domain). Most queries and ids have none of these and skip
    the analyzer, whose import alone takes seconds."""
    marks = "@:." if "URL" in entities else "@:"
    return any(char.isdigit() or char in marks for char in value)


NO_MASKING = PiiMasker({})


def query_masker(contracts: list[DataProductContract]) -> PiiMasker:
    """What a query or question is masked with before it leaves for a model (embedding or chat)
    or is recorded anywhere: the platform's default types (`QUERY_ENTITIES`), whatever the
    products mask, plus every type any of the products masks; each as a placeholder."""
    entities = sorted({*QUERY_ENTITIES, *(entity for c in contracts for entity in c.pii_masking)})
    return _masker(tuple((entity, "placeholder") for entity in entities))


def object_key_masker() -> PiiMasker:
    """What a landing-zone object key is masked with before it is stored (the landing ledger,
    quarantine references): every type but URL, as placeholders."""
    return _masker(tuple((entity, "placeholder") for entity in OBJECT_KEY_ENTITIES))


@lru_cache(maxsize=100_000)
def masked_object_key(key: str) -> str:
    """An object key as the store keeps it: itself, or masked if it holds PII."""
    return object_key_masker().text(key)


def pii_in_id(contract: DataProductContract, value: str) -> list[str]:
    """The entity types the contract masks that a document id holds (URL aside: a URL or a
    file name is a common id, and the URL pattern matches most file names).

    A match that is only digits does not count: a bare run of digits in an id is a counter, a
    date or a surrogate key far more often than a phone, card or social security number
    (`ORD-2026041512` is a valid US phone number); a formatted one (`+1 415-555-0134`,
    `4111-1111-1111-1111`) counts, as does any email, IBAN or IP address.
    """
    entities = sorted(entity for entity in contract.pii_masking if entity != "URL")
    if not entities or not could_hold(value, entities):
        return []
    found = _masker(tuple((entity, "placeholder") for entity in entities)).found(value)
    return sorted({entity for entity, text in found if not text.isdigit()})


def masker_for(contract: DataProductContract) -> PiiMasker:
    """The contract's masker; one per masking spec and process."""
    if not contract.pii_masking:
        return NO_MASKING
    return _masker(tuple(sorted(contract.pii_masking.items())))


@cache
def _masker(masking: tuple[tuple[str, str], ...]) -> PiiMasker:
    from mesh_rag_pipelines.settings import current as current_settings

    return PiiMasker(dict(masking), current_settings().pii_hash_key)
