"""One user's machine for the whole session: `mesh-rag demo` on a private copy of the products,
then `mesh-rag ui`, started once and stopped at the end with the embedded services.

The scenario modules run in the order of their numbers; each leaves the product as it found it
(a broken contract is restored before the release), and the last one stops `mesh-rag ui`."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh_rag_pipelines_tests.acceptance.harness import Acceptance, free_port


@pytest.fixture(scope="session")
def acceptance(request: pytest.FixtureRequest) -> Iterator[Acceptance]:
    """Outside pytest's temporary folders, which pytest keeps private to root: the embedded
    PostgreSQL runs as its own user and must reach its folder. Kept when a test failed."""
    started = time.monotonic()
    session = Acceptance(Path(tempfile.mkdtemp(prefix="mesh_rag_acceptance_")))
    print(f"\nacceptance session in {session.root} (logs in {session.home})")
    try:
        session.prepare()
        session.run_demo()
        session.start_ui(free_port())
        session.wait_until_ready()
        session.wait_for_first_ticks()
        session.wait_until_idle()
        print(f"acceptance session ready after {time.monotonic() - started:.0f} s")
        yield session
    finally:
        session.stop()
        print(f"\nacceptance session took {time.monotonic() - started:.0f} s")
    if request.session.testsfailed == 0:
        shutil.rmtree(session.root, ignore_errors=True)
