"""Component tests: `build` declares ONE component through the program's own wiring
(components/wiring.py: `Wiring(settings).<component>`, then `finish()`), under the recording
mocks: the component with exactly the neighbours it takes, not the whole program."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from components.settings.stack import Settings, parse
from components.wiring import Wiring
from preflight.offline import Plan, Resource, run_program, stack_config

COMPONENTS: dict[str, tuple[str, str, str]] = {
    # key: (the component's type token, its name, the Wiring attribute that declares it)
    "network": ("mlops:index:Network", "network", "network"),
    "store": ("mlops:index:SharedStore", "store", "store"),
    "cluster": ("mlops:index:Cluster", "cluster", "cluster"),
    "image_repo": ("mlops:index:ImageRepo", "image", "images"),
    "platform_image": ("mlops:index:ImageRepo", "platform-image", "platform_images"),
    "alarm_topic": ("mlops:index:AlarmTopic", "inference-alarms", "alarms"),
    "load_balancer": ("mlops:index:LoadBalancer", "inference", "edge"),
    "inference_service": ("mlops:index:InferenceService", "inference", "inference"),
    "training_task": ("mlops:index:TrainingTask", "training", "training"),
    "monitoring": ("mlops:index:Monitoring", "monitoring", "monitoring"),
    "model_monitor": ("mlops:index:Monitoring", "model-monitor", "model_monitor"),
    "ci_trust": ("mlops:index:CiTrust", "ci", "ci"),
    "model_artifacts": ("mlops:index:ModelArtifacts", "artifacts", "artifacts"),
    "boundary": ("mlops:index:PermissionsBoundary", "boundary", "boundary"),
}


def settings_for(stack: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """The stack file's `mlops:*` config with `overrides` merged key by key, parsed."""
    config = stack_config(stack)
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("mlops:")}
    for section, values in (overrides or {}).items():
        raw[section] = _merged(raw.get(section) or {}, values)
    return parse(raw, stack=stack, region=config["aws:region"])


def _merged(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, Mapping):
        return {**base, **{k: _merged(base.get(k), v) for k, v in extra.items()}}
    return extra


@dataclass
class Built:
    """One component's plan: the component, what it declared, and its neighbours' resources."""

    plan: Plan
    component: Resource

    @property
    def children(self) -> list[Resource]:
        return self.plan.children_of(self.component.urn)

    def one(self, type_: str, name_contains: str = "") -> Resource:
        """The one child of this component of `type_` whose name contains `name_contains`."""
        found = [r for r in self.children if r.type == type_ and name_contains in r.name]
        assert len(found) == 1, f"{len(found)} {type_} children named *{name_contains}*"
        return found[0]

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.children if r.type == type_]


_BUILT: dict[str, Built] = {}


def _build(
    component: str, stack: str = "dev", overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Built:
    key = json.dumps([component, stack, overrides], sort_keys=True)
    if key not in _BUILT:
        type_, name, attribute = COMPONENTS[component]
        settings = settings_for(stack, overrides)

        def declare() -> None:
            wiring = Wiring(settings)
            assert getattr(wiring, attribute) is not None, f"{stack} declares no {component}"
            wiring.finish()

        plan = run_program(declare, stack)
        _BUILT[key] = Built(plan=plan, component=plan.one(type_, name))
    return _BUILT[key]


@pytest.fixture
def build() -> Callable[..., Built]:
    """`build("load_balancer", "prod", {"inference": {"waf": False}})`: that component alone,
    with its neighbours, from the stack's config plus overrides; cached per arguments."""
    return _build
