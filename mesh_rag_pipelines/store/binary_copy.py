"""PostgreSQL binary COPY encoding: vectors go over the wire as raw float4, no text formatting.

Text COPY spends its time printing and parsing floats (~3k 384-d rows/s); binary COPY moves
the same rows an order of magnitude faster.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_TRAILER = struct.pack("!h", -1)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_TEXT_OID = 25
_NULL = struct.pack("!i", -1)


def _field(payload: bytes) -> bytes:
    return struct.pack("!i", len(payload)) + payload


def encode_text(value: str | None) -> bytes:
    return _NULL if value is None else _field(value.encode())


def encode_int2(value: int) -> bytes:
    return _field(struct.pack("!h", value))


def encode_int4(value: int) -> bytes:
    return _field(struct.pack("!i", value))


def encode_int8(value: int) -> bytes:
    return _field(struct.pack("!q", value))


def encode_timestamptz(value: datetime | None) -> bytes:
    if value is None:
        return _NULL
    delta = value - _PG_EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return _field(struct.pack("!q", micros))


def encode_jsonb(value: Any) -> bytes:
    return _field(b"\x01" + json.dumps(value, default=str).encode())


def encode_text_array(values: Sequence[str]) -> bytes:
    if not values:
        return _field(struct.pack("!iii", 0, 0, _TEXT_OID))
    body = struct.pack("!iiiii", 1, 0, _TEXT_OID, len(values), 1)
    body += b"".join(_field(v.encode()) for v in values)
    return _field(body)


def encode_vector(vector: np.ndarray) -> bytes:
    """pgvector's binary form: int16 dimensions, int16 unused, then big-endian float4."""
    return _field(struct.pack("!hh", len(vector), 0) + vector.astype(">f4").tobytes())


def copy_payload(rows: Iterable[Sequence[bytes]]) -> io.BytesIO:
    """A whole COPY ... FROM STDIN (FORMAT binary) stream from pre-encoded fields."""
    buffer = io.BytesIO()
    buffer.write(_HEADER)
    for fields in rows:
        buffer.write(struct.pack("!h", len(fields)))
        buffer.write(b"".join(fields))
    buffer.write(_TRAILER)
    buffer.seek(0)
    return buffer
