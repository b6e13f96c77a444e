"""What contract fields share with the code that reads them (source kinds, PII masking, access
control), kept apart from the contract model so that those modules need not import it."""

from __future__ import annotations

from typing import Literal

# An ACL group: a name that is safe inside the caller setting row-level security reads.
GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
# Entity types the PII masker recognizes (pattern and checksum recognizers, no model).
PII_ENTITIES = (
    "CREDIT_CARD",
    "EMAIL_ADDRESS",
    "IBAN_CODE",
    "IP_ADDRESS",
    "PHONE_NUMBER",
    "URL",
    "US_SSN",
)
PiiEntity = Literal[
    "CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "PHONE_NUMBER", "URL", "US_SSN"
]


class FieldProblem(ValueError):
    """A problem with one field, found by a validator that sees several: the loader reports
    it under that field rather than under the object."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(problem)
