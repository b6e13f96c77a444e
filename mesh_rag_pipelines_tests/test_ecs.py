"""Runs on ECS through dagster-aws's EcsRunLauncher, configured as `infra/ecs/dagster.yaml`,
against moto's ECS API on loopback (no AWS account here): a backfill of every shard of a
product issues one RunTask per shard, each running `dagster api execute_run` from the code
location's image, with the configured resources, environment and secrets.

The queued coordinator is swapped for the default one so that runs launch as they are
submitted, without a daemon (the topology test exercises the queue)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import moto.ecs.models as moto_ecs
import pytest
import yaml
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import deserialize_value
from moto.server import ThreadedMotoServer

from mesh_rag_pipelines.services.local_s3 import free_port

ECS_INSTANCE = Path(__file__).resolve().parents[1] / "infra" / "ecs" / "dagster.yaml"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mesh-rag:2026.11"
DAGSTER = str(Path(sys.executable).parent / "dagster")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's AWS APIs on loopback; boto3 finds them through AWS_ENDPOINT_URL."""
    original = moto_ecs.EC2ContainerServiceBackend._calculate_task_resource_requirements

    def with_memory(task_definition: Any) -> Any:
        # moto 5 cannot size a Fargate container without container-level memory, which is
        # what EcsRunLauncher registers (the task-level memory is what Fargate uses).
        for container in task_definition.container_definitions:
            container.setdefault("memoryReservation", 0)
        return original(task_definition)

    monkeypatch.setattr(
        moto_ecs.EC2ContainerServiceBackend,
        "_calculate_task_resource_requirements",
        staticmethod(with_memory),
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4", raising=False)
    yield endpoint
    server.stop()


def _instance_config(subnet: str, group: str) -> str:
    config = yaml.safe_load(ECS_INSTANCE.read_text())
    config["run_coordinator"] = {
        "module": "dagster._core.run_coordinator",
        "class": "DefaultRunCoordinator",
    }
    network = config["run_launcher"]["config"]["run_task_kwargs"]["networkConfiguration"]
    network["awsvpcConfiguration"].update(subnets=[subnet], securityGroups=[group])
    return yaml.safe_dump(config)


def test_a_backfill_issues_one_ecs_task_per_shard(
    monkeypatch: pytest.MonkeyPatch, aws: str, tmp_path: Path, new_database: Any
) -> None:
    ecs, ec2 = boto3.client("ecs"), boto3.client("ec2")
    ecs.create_cluster(clusterName="mesh-rag")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="runs", Description="runs", VpcId=vpc)["GroupId"]
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(_instance_config(subnet, group))
    env = {key: value for key, value in os.environ.items() if not key.startswith("MESH_RAG_")}
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_POSTGRES_URL=new_database(),
        DAGSTER_CURRENT_IMAGE=IMAGE,
        MESH_RAG_DATABASE_URL="postgresql+psycopg2://mesh_rag@store.internal/mesh_rag",
        MESH_RAG_S3_ENDPOINT_URL="https://s3.us-east-1.amazonaws.com",
    )
    done = subprocess.run(
        [DAGSTER, "job", "backfill", "-m", "mesh_rag_pipelines.locations", "-a", "people",
         "-j", "sync_hr_policies", "--partitions", "00,01,02,03", "--noprompt"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    arns = ecs.list_tasks(cluster="mesh-rag")["taskArns"]
    assert len(arns) == 4
    tasks = ecs.describe_tasks(cluster="mesh-rag", tasks=arns)["tasks"]
    run_ids = []
    for task in tasks:
        assert task["launchType"] == "FARGATE"
        (override,) = task["overrides"]["containerOverrides"]
        assert override["name"] == "run"
        assert override["command"][:3] == ["dagster", "api", "execute_run"]
        arguments = deserialize_value(override["command"][3], ExecuteRunArgs)
        assert arguments.job_origin.job_name == "sync_hr_policies"
        run_ids.append(arguments.run_id)
        definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])
        (container,) = definition["taskDefinition"]["containerDefinitions"]
        assert container["image"] == IMAGE
        environment = {e["name"]: e["value"] for e in container.get("environment", [])}
        assert environment["MESH_RAG_S3_ENDPOINT_URL"] == "https://s3.us-east-1.amazonaws.com"
        assert {s["name"] for s in container["secrets"]} == {
            "MESH_RAG_DATABASE_URL",
            "DAGSTER_POSTGRES_URL",
            "OPENAI_API_KEY",
        }
        sizes = (definition["taskDefinition"]["cpu"], definition["taskDefinition"]["memory"])
        assert sizes == ("2048", "8192")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", env["DAGSTER_POSTGRES_URL"])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = [instance.get_run_by_id(run_id) for run_id in run_ids]
        assert sorted(run.tags["dagster/partition"] for run in runs if run) == [
            "00",
            "01",
            "02",
            "03",
        ]
