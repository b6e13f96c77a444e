"""Snapshot of the asset graph: an accidental change to keys, deps, groups, owners, partitions,
checks or automation shows up here. After an intended change, regenerate with
UPDATE_SNAPSHOTS=1 pytest mesh_rag_pipelines_tests/test_asset_graph.py and review the diff."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mesh_rag_pipelines.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def _graph() -> dict:
    definitions = defs()
    repository = definitions.get_repository_def()
    graph = repository.asset_graph
    checks_by_asset: dict[str, list[str]] = {}
    for check_key in sorted(graph.asset_check_keys, key=str):
        checks_by_asset.setdefault(check_key.asset_key.to_user_string(), []).append(check_key.name)
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        spec = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "group": node.group_name,
            "owners": list(node.owners),
            "kinds": sorted(node.kinds),
            "partitions": node.partitions_def.get_partition_keys() if node.partitions_def else None,
            "materializable": node.is_materializable,
            "checks": sorted(checks_by_asset.get(key.to_user_string(), [])),
            "freshness_policy": repr(node.freshness_policy) if node.freshness_policy else None,
        }
        assets[key.to_user_string()] = spec
    return {
        "assets": assets,
        "jobs": sorted(
            job.name for job in repository.get_all_jobs() if not job.name.startswith("__")
        ),
        "sensors": sorted(s.name for s in repository.sensor_defs),
        "schedules": sorted(s.name for s in repository.schedule_defs),
    }


def test_asset_graph_matches_snapshot() -> None:
    current = _graph()
    if os.environ.get("UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_every_asset_sits_in_its_products_domain_group() -> None:
    graph = defs().get_repository_def().asset_graph
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert set(groups.values()) == {"commerce", "people", "customer_support"}
    assert groups["hr_policies/embeddings"] == "people"
