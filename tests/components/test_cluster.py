"""Cluster built alone under mocks: Container Insights and the Fargate capacity providers, both
stacks' config."""

from __future__ import annotations

import pytest

from preflight.offline import Plan

CLUSTER = "aws:ecs/cluster:Cluster"
PROVIDERS = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
STACKS = pytest.mark.parametrize("stack", ["dev", "prod"])


def test_container_insights_is_a_per_stack_choice(build):
    # Priced in the plan ($0.30 a metric): prod keeps it, dev gives it up.
    for stack, value in (("prod", "enabled"), ("dev", "disabled")):
        cluster = build("cluster", stack).one(CLUSTER, "cluster")
        assert cluster.inputs["settings"] == [{"name": "containerInsights", "value": value}]


@STACKS
def test_fargate_and_fargate_spot_are_attached_to_the_cluster(build, stack):
    built = build("cluster", stack)
    cluster = built.one(CLUSTER, "cluster")
    providers = built.one(PROVIDERS, "cluster")
    assert providers.inputs["clusterName"] == cluster.outputs["name"]
    assert {"FARGATE", "FARGATE_SPOT"} <= set(providers.inputs["capacityProviders"])


@STACKS
def test_tasks_started_without_a_strategy_run_on_demand(build, stack):
    providers = build("cluster", stack).one(PROVIDERS, "cluster")
    assert providers.inputs["defaultCapacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE", "base": 0, "weight": 1}
    ]


@STACKS
def test_gpu_capacity_only_where_the_settings_decided_gpu(build, stack):
    """prod trains on GPU EC2 (a GpuCapacity child, its provider attached); dev does not."""
    built = build("cluster", stack)
    gpus = [r for r in built.children if r.type == "mlops:index:GpuCapacity"]
    attached = built.one(PROVIDERS, "cluster").inputs["capacityProviders"]
    assert [g.name for g in gpus] == (["cluster-gpu"] if stack == "prod" else [])
    assert len(attached) == (3 if stack == "prod" else 2)


def test_children_are_parented_and_the_name_is_exported(plan: Plan):
    component = plan.one("mlops:index:Cluster", "cluster")
    children = {r.type for r in plan.children_of(component.urn)}
    assert {CLUSTER, PROVIDERS} <= children
    assert plan.exports["cluster_name"] == plan.one(CLUSTER, "cluster").outputs["name"]


@STACKS
def test_the_service_waits_for_the_providers(build, stack):
    """Its strategy is built from the attached providers, so Spot is attached before use."""
    plan = build("inference_service", stack).plan
    providers = plan.one(PROVIDERS, "cluster")
    service = plan.one("aws:ecs/service:Service", "inference")
    assert providers.urn in service.depends_on
