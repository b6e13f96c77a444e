"""The deployment files agree with the workspace: the compose stack and the production workspace
run one code server per domain, from the image that `infra/install.sh` installs; the values for
Dagster's Helm chart (`infra/helm/values.yaml`) make one user-code deployment per domain, runs as
Kubernetes Jobs and external instance storage. The values are rendered and linted with Helm
itself (helm-python-sdk, Helm as a library, offline) when the chart is present locally:
MESH_RAG_DAGSTER_CHART names its folder (`helm pull dagster/dagster --version 1.13.27
--untar`); the chart is not on PyPI, so a machine without it skips that test."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VALUES = yaml.safe_load((ROOT / "infra" / "helm" / "values.yaml").read_text())
CHART = os.environ.get("MESH_RAG_DAGSTER_CHART")


def _domains() -> list[str]:
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    return [entry["python_module"]["attribute"] for entry in workspace["load_from"]]


def test_the_compose_stack_serves_each_domain_from_the_image() -> None:
    compose = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())
    production = yaml.safe_load((ROOT / "infra" / "production" / "workspace.yaml").read_text())
    servers = [entry["grpc_server"] for entry in production["load_from"]]
    assert [server["location_name"] for server in servers] == _domains()
    for server in servers:
        service = compose["services"][server["host"]]
        assert service["image"] == "mesh-rag:0.1.0"
        assert service["command"][-4:] == [
            "-m", "mesh_rag_pipelines.locations", "-a", server["location_name"]
        ]  # fmt: skip
        assert str(server["port"]) in service["command"]
    for name in ("webserver", "daemon"):
        assert "/opt/dagster/workspace.yaml" in compose["services"][name]["command"]
    dockerfile = (ROOT / "infra" / "image" / "Dockerfile").read_text()
    assert "bash infra/install.sh /opt/venv" in dockerfile
    assert "bash infra/install.sh .venv --dev" in (ROOT / "infra/local/setup.sh").read_text()


def test_the_helm_values_make_one_code_server_per_domain() -> None:
    domains = _domains()
    deployments = VALUES["dagster-user-deployments"]["deployments"]
    assert [d["dagsterApiGrpcArgs"] for d in deployments] == [
        ["-m", "mesh_rag_pipelines.locations", "-a", domain] for domain in domains
    ]
    assert [d["name"] for d in deployments] == [domain.replace("_", "-") for domain in domains]
    assert len({json.dumps(d["image"]) for d in deployments}) == 1
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    assert VALUES["postgresql"]["enabled"] is False


def _without_remote_references(node: Any) -> None:
    """The chart's schema refers to Kubernetes definitions by URL; offline they are dropped
    (the type and item constraints beside them still apply)."""
    if isinstance(node, dict):
        if str(node.get("$ref", "")).startswith(("http://", "https://")):
            node.pop("$ref")
        for value in node.values():
            _without_remote_references(value)
    elif isinstance(node, list):
        for value in node:
            _without_remote_references(value)


def _offline_copy(chart: Path, target: Path) -> Path:
    copy = target / chart.name
    shutil.copytree(chart, copy)
    for schema in copy.rglob("values.schema.json"):
        document = json.loads(schema.read_text())
        _without_remote_references(document)
        schema.write_text(json.dumps(document))
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    # Remote subcharts (bitnami PostgreSQL, Redis) are disabled by the values; drop them.
    meta["dependencies"] = [
        dep
        for dep in meta.get("dependencies", [])
        if not str(dep.get("repository", "")).startswith(("http", "oci"))
    ]
    (copy / "Chart.yaml").write_text(yaml.safe_dump(meta))
    (copy / "Chart.lock").unlink(missing_ok=True)
    return copy


@pytest.mark.skipif(
    not CHART or not Path(CHART).is_dir(),
    reason="Dagster's Helm chart is not available offline (set MESH_RAG_DAGSTER_CHART)",
)
def test_the_values_render_and_lint_with_dagsters_chart(tmp_path: Path) -> None:
    import helm_python as helm

    chart = _offline_copy(Path(str(CHART)), tmp_path)
    loaded = helm.Chart.load(chart)
    loaded.validate_schema(VALUES)
    manifests = loaded.render(VALUES, name="mesh-rag", namespace="dagster", is_install=True)
    documents = [d for text in manifests.values() for d in yaml.safe_load_all(text) if d]
    servers = {
        d["metadata"]["name"]
        for d in documents
        if d["kind"] == "Deployment" and "user-deployments" in d["metadata"]["name"]
    }
    assert len(servers) == 3
    report = helm.lint(chart, VALUES, strict=True, kube_version="v1.30.0")
    assert not report["errors"], report
