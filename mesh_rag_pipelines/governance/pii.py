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
answering endpoints) ever holds the original.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from functools import cache
from typing import Any

from mesh_rag_pipelines.contracts.model import PII_ENTITIES, DataProductContract

# Phone numbers written without a country code are parsed as numbers of these regions.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IE", "CA", "AU", "IN")
logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)


@cache
def _analyzer() -> Any:
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
        """The stock recognizer, with the bundled suffix list instead of a download."""

        def validate_result(self, pattern_text: str) -> bool:
            return bool(suffixes(pattern_text).fqdn)

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


@cache
def _anonymizer() -> Any:
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
        self._operators = {
            entity: self._operator(entity, how, hash_key) for entity, how in masking.items()
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
        if not self._entities or not value:
            return value
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
        """Strings masked at any depth of dicts and lists; other values as they are."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value


NO_MASKING = PiiMasker({})


def query_masker(contracts: list[DataProductContract]) -> PiiMasker:
    """What a query or question is masked with before it leaves for a model: every entity type
    any of the products masks, as a placeholder."""
    entities = sorted({entity for c in contracts for entity in c.pii_masking})
    if not entities:
        return NO_MASKING
    return _masker(tuple((entity, "placeholder") for entity in entities))


def masker_for(contract: DataProductContract) -> PiiMasker:
    """The contract's masker; one per masking spec and process."""
    if not contract.pii_masking:
        return NO_MASKING
    return _masker(tuple(sorted(contract.pii_masking.items())))


@cache
def _masker(masking: tuple[tuple[str, str], ...]) -> PiiMasker:
    from mesh_rag_pipelines import settings

    return PiiMasker(dict(masking), settings.pii_hash_key())
