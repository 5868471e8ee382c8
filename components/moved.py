"""Where resources lived before a refactoring moved them to a new parent component.

A resource's URN includes its parent's type chain, so moving a child to a new component would
make `pulumi up` delete the old resource and create a new one. An alias naming the old parent
tells the engine the two URNs are one resource (Pulumi docs, "Resource options: aliases"), so
the move changes nothing in AWS. Keep an entry while any deployed stack may predate the move.
"""

from __future__ import annotations

import pulumi

INFERENCE_SERVICE = ("inference", "mlops:index:InferenceService")
"""Before issue 22 the InferenceService component `inference` held the load-balancer edge (now
the `LoadBalancer` component, components/load_balancer.py) and the alarm topic (now
`AlarmTopic`, components/alarm_topic.py)."""


def from_inference_service() -> list[pulumi.Alias]:
    """Aliases for a child that moved out of the `inference` InferenceService: same name and
    type, old parent."""
    name, type_ = INFERENCE_SERVICE
    return [pulumi.Alias(parent=pulumi.create_urn(name, type_))]
