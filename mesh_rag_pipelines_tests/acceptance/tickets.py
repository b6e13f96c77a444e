"""Support tickets as their upstream helpdesk exports them: JSON Lines change events, the
format of the shipped sample files, written as new objects under the landing prefix."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

PRODUCT = "support_tickets"
GROUP = "support_agents"
PREFIX = "support_tickets/"


def new_ticket_id() -> str:
    return f"T-A{uuid.uuid4().hex[:8].upper()}"


def unique_word(stem: str) -> str:
    return f"{stem}{uuid.uuid4().hex[:6]}"


def ticket_upsert(ticket_id: str, body: str, subject: str = "Stove valve hisses") -> dict[str, Any]:
    return {
        "op": "upsert",
        "id": ticket_id,
        "version": 1,
        "updated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "ticket_id": ticket_id,
            "subject": subject,
            "body": body,
            "status": "open",
            "priority": "normal",
            "product_area": "stoves",
            "customer_email": "camper@example.com",
        },
    }


def landing_key(label: str) -> str:
    """A key like the shipped samples': a timestamp, then what the batch is."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    return f"{PREFIX}{stamp}-{label}-{uuid.uuid4().hex[:6]}.jsonl"


def jsonl(*events: dict[str, Any]) -> str:
    return "".join(json.dumps(event) + "\n" for event in events)


def stove_complaint(word: str) -> str:
    return (
        f"My {word} canister stove keeps hissing after I close the valve, and the flame will not "
        "go out completely. I smell gas at the campsite even when it is packed away. Can I send "
        "it in for a repair, or should I order a replacement valve assembly?"
    )
