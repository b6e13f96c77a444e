"""The wheel as a deployment installs it: non-editable, into a clean virtual environment, with
the sample products, migrations and components inside and no tests or benchmarks; installed so,
the command line checks contracts and builds a product from any working directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import Engine

from mesh_rag_pipelines.store.health import index_health

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools leaves its build folder beside the sources.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPOSITORY / name, source / name)
    shutil.copytree(
        REPOSITORY / "mesh_rag_pipelines",
        source / "mesh_rag_pipelines",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(source)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (found,) = out.glob("mesh_rag_pipelines-*.whl")
    return found


def test_the_wheel_holds_the_project_and_no_tests(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {name.split("/")[0] for name in names if not name.endswith(".dist-info/RECORD")}
    assert {p for p in packages if not p.endswith(".dist-info")} == {"mesh_rag_pipelines"}
    assert not [name for name in names if "tests" in name or "benchmarks" in name]
    for needed in [
        "mesh_rag_pipelines/store/__init__.py",
        "mesh_rag_pipelines/store/migrations/env.py",
        "mesh_rag_pipelines/store/migrations/versions/0001_baseline.py",
        "mesh_rag_pipelines/components.py",
        "mesh_rag_pipelines/products/people/hr_policies/defs.yaml",
        "mesh_rag_pipelines/products/people/hr_policies/sample_data/travel.md",
        "mesh_rag_pipelines/products/commerce/catalog_products/sample_data/products.jsonl",
    ]:
        assert needed in names, needed


def test_installed_non_editable_it_checks_and_builds(
    wheel: Path, tmp_path: Path, database_url: str, engine: Engine
) -> None:
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    site = next((target / "lib").glob("python3.*/site-packages"))
    # The dependencies from this environment, without its editable install of the project.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install",
         "--no-deps", "-q", str(wheel)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "MESH_RAG_CONTRACTS_DIR"}
    env.update(MESH_RAG_DATABASE_URL=database_url, DAGSTER_HOME=str(tmp_path))

    def run(*command: str) -> str:
        done = subprocess.run(
            command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    where = "import mesh_rag_pipelines; print(mesh_rag_pipelines.__file__)"
    located = run(str(target / "bin" / "python"), "-c", where)
    assert located.startswith(str(site))
    checked = run(str(target / "bin" / "mesh-rag"), "check").splitlines()
    assert [line.split()[:2] for line in checked] == [
        ["ok", name] for name in ("catalog_products", "hr_policies", "support_tickets")
    ]
    assert all(str(site / "mesh_rag_pipelines" / "products") in line for line in checked)
    built = run(str(target / "bin" / "mesh-rag"), "build", "--product", "hr_policies")
    assert "hr_policies: index matches its source: 12 documents" in built
    health = index_health(engine, "hr_policies")
    assert health is not None and health.consistent and health.live_documents == 12
