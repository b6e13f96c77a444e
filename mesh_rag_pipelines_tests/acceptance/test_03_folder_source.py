"""Policies are markdown files in a folder: a file added, edited or deleted there is added,
changed or removed in the index on the contract's poll cadence, with no manual step."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pytest

from mesh_rag_pipelines_tests.acceptance.harness import Acceptance

PRODUCT = "hr_policies"
GROUP = "employees"
SYNC_SECONDS = 300
NEW_FILE = "field-testing-safety.md"
EDITED_FILE = "code-of-conduct.md"
DELETED_FILE = "whistleblowing.md"
DELETED_QUERY = "How do I report a concern about wrongdoing anonymously, and am I protected?"


@dataclass(frozen=True)
class FolderChanges:
    word: str
    new_text: str
    edited_text: str
    deleted_before: list[dict[str, Any]]
    sync_error: str | None


def is_file(hit: dict[str, Any], name: str) -> bool:
    """Whether a hit is the document of file `name` (its id is the file's path in the folder,
    with or without its extension)."""
    return hit["doc_id"] in (name, PurePath(name).stem)


def new_policy(word: str) -> str:
    return f"""---
title: Field Testing Safety Policy
effective_date: 2026-12-01
policy_owner: Product Safety
---

# Field Testing Safety Policy

## Purpose

Employees who test Northwind gear outdoors follow the {word} protocol: a written route plan
left with the product safety desk, a satellite messenger for every trip beyond phone coverage,
and a turnaround time agreed before departure. Tests on glaciers or avalanche terrain need two
certified testers and a rescue plan signed by the head of product safety.
"""


def edited_paragraph(word: str) -> str:
    return (
        f"\n## Gifts From Suppliers\n\nUnder the {word} rule, gifts from suppliers worth more than "
        "50 dollars are declined politely and reported to People Operations within five working "
        "days, together with the name of the supplier and the occasion.\n"
    )


@pytest.fixture(scope="module")
def folder_changes(acceptance: Acceptance) -> Iterator[FolderChanges]:
    """One poll's worth of changes: a file added, one edited, one deleted; then their sync."""
    acceptance.wait_until_idle(quiet=5)
    deleted_before = acceptance.query_json(DELETED_QUERY, GROUP, PRODUCT, k=5)["hits"]
    word = f"velmarin{uuid.uuid4().hex[:6]}"
    changed_at = time.time()
    new_text = new_policy(word)
    acceptance.write_sample_file(PRODUCT, NEW_FILE, new_text)
    edited = acceptance.sample_file(PRODUCT, EDITED_FILE)
    edited_text = edited_paragraph(word)
    edited.write_text(edited.read_text() + edited_text)
    acceptance.delete_sample_file(PRODUCT, DELETED_FILE)
    try:
        acceptance.wait_for_sync(PRODUCT, changed_at, SYNC_SECONDS)
        sync_error = None
    except AssertionError as timeout:
        sync_error = str(timeout)
    yield FolderChanges(word, new_text, edited_text, deleted_before, sync_error)


def test_a_new_markdown_file_becomes_queryable(
    acceptance: Acceptance, folder_changes: FolderChanges
) -> None:
    assert folder_changes.sync_error is None, folder_changes.sync_error
    hits = acceptance.query_json(folder_changes.new_text, GROUP, PRODUCT, k=3)["hits"]
    found = [hit for hit in hits if is_file(hit, NEW_FILE)]
    assert found and folder_changes.word in found[0]["text"], hits


def test_an_edited_file_is_served_with_its_new_text(
    acceptance: Acceptance, folder_changes: FolderChanges
) -> None:
    assert folder_changes.sync_error is None, folder_changes.sync_error
    hits = acceptance.query_json(folder_changes.edited_text, GROUP, PRODUCT, k=3)["hits"]
    found = [hit for hit in hits if is_file(hit, EDITED_FILE)]
    assert any(folder_changes.word in hit["text"] for hit in found), hits


def test_a_deleted_file_disappears_from_the_results(
    acceptance: Acceptance, folder_changes: FolderChanges
) -> None:
    assert any(is_file(hit, DELETED_FILE) for hit in folder_changes.deleted_before)
    assert folder_changes.sync_error is None, folder_changes.sync_error
    hits = acceptance.query_json(DELETED_QUERY, GROUP, PRODUCT, k=5)["hits"]
    assert [hit["doc_id"] for hit in hits if is_file(hit, DELETED_FILE)] == []
