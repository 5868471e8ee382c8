"""Cluster under mocks: Container Insights and the Fargate capacity providers, both stacks."""

from __future__ import annotations

from preflight.offline import Plan

CLUSTER = "aws:ecs/cluster:Cluster"
PROVIDERS = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"


def test_container_insights_is_a_per_stack_choice(dev_plan: Plan, prod_plan: Plan):
    # Priced in the plan ($0.30 a metric): prod keeps it, dev gives it up.
    for plan, value in ((prod_plan, "enabled"), (dev_plan, "disabled")):
        cluster = plan.one(CLUSTER, "cluster")
        assert cluster.inputs["settings"] == [{"name": "containerInsights", "value": value}]


def test_fargate_and_fargate_spot_are_attached_to_the_cluster(plan: Plan):
    cluster = plan.one(CLUSTER, "cluster")
    providers = plan.one(PROVIDERS, "cluster")
    assert providers.inputs["clusterName"] == cluster.outputs["name"]
    assert {"FARGATE", "FARGATE_SPOT"} <= set(providers.inputs["capacityProviders"])


def test_tasks_started_without_a_strategy_run_on_demand(plan: Plan):
    providers = plan.one(PROVIDERS, "cluster")
    assert providers.inputs["defaultCapacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE", "base": 0, "weight": 1}
    ]


def test_children_are_parented_and_the_name_is_exported(plan: Plan):
    component = plan.one("mlops:index:Cluster", "cluster")
    children = {r.type for r in plan.children_of(component.urn)}
    assert {CLUSTER, PROVIDERS} <= children
    assert plan.exports["cluster_name"] == plan.one(CLUSTER, "cluster").outputs["name"]


def test_the_service_waits_for_the_providers(plan: Plan):
    """Its strategy is built from the attached providers, so Spot is attached before use."""
    providers = plan.one(PROVIDERS, "cluster")
    service = plan.one("aws:ecs/service:Service", "inference")
    assert providers.urn in service.depends_on
