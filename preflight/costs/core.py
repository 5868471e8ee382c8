"""What every resource family of the cost model shares: the cost line, the estimate, the ledger
the families write their lines and assumptions to, readers for the plan's inputs, and the verdict
on each resource (priced, free or unknown).

Nothing here prices a resource: the price of every line is looked up in `preflight/prices.py`
(`PRICES`, the dated us-east-1 list prices with their pages; `ASSUMPTIONS`, the usage figures no
program can know), by the family that adds it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from preflight import prices
from preflight.offline import Plan, Resource

COMPONENT_PREFIXES = ("mlops:", "pulumi:")
"""Component resources: their cost is their children's."""
MONTHS_PER_YEAR = 12


# --- reading inputs ------------------------------------------------------------------------------


def get_path(value: Any, path: str) -> Any:
    """`value["a"]["b"]` for `path` "a.b"; None where a step is missing or not a map."""
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def as_number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def json_document(value: Any) -> Any:
    """A JSON document input (a string on the wire) as Python values; None if it is not one."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict | list) else None


def resources_of(plan: Plan, *types: str) -> list[Resource]:
    """The plan's resources of any of `types`, in the plan's order."""
    return [r for r in plan.resources if r.type in types]


# --- the estimate --------------------------------------------------------------------------------


@dataclass
class CostLine:
    resource: str
    type: str
    item: str
    quantity: float | None = None
    unit: str = ""
    unit_usd: float | None = None
    monthly_usd: float | None = None
    """None: unknown (no price in the table)."""
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "type": self.type,
            "item": self.item,
            "quantity": None if self.quantity is None else round(self.quantity, 4),
            "unit": self.unit,
            "unit_usd": self.unit_usd,
            "monthly_usd": None if self.monthly_usd is None else round(self.monthly_usd, 2),
            "note": self.note,
        }


@dataclass
class Estimate:
    lines: list[CostLine]
    assumptions: dict[str, dict[str, Any]]
    pricing: dict[str, str]
    """Resource URN -> "priced", "free" or "unknown"."""

    @property
    def total(self) -> float:
        return round(sum(line.monthly_usd or 0.0 for line in self.lines), 2)

    @property
    def unknown(self) -> list[CostLine]:
        return [line for line in self.lines if line.monthly_usd is None]

    def of(self, resource: Resource) -> float | None:
        mine = [line for line in self.lines if line.resource == resource.name]
        mine = [line for line in mine if line.type == resource.type]
        if any(line.monthly_usd is None for line in mine):
            return None
        return sum(line.monthly_usd or 0.0 for line in mine)


@dataclass
class Ledger:
    """What the families write to: the cost lines in the order they were added, and every
    assumption a line used (reported with the estimate)."""

    overrides: Mapping[str, float] = field(default_factory=dict)
    """Assumption values given on the command line (`--assume key=value`)."""
    lines: list[CostLine] = field(default_factory=list)
    assumptions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def assume(self, key: str) -> float:
        """The value of assumption `key` (overridden or `prices.ASSUMPTIONS`'), recorded as used."""
        assumption = prices.ASSUMPTIONS[key]
        value = self.overrides.get(key, assumption.value)
        note = assumption.note + (" [overridden]" if key in self.overrides else "")
        self.assumptions[key] = {"value": value, "note": note}
        return value

    def derive(self, key: str, value: float, note: str) -> None:
        """Report a figure the model worked out (runs a month, average tasks) with the
        assumptions."""
        self.assumptions[key] = {"value": round(value, 4), "note": note}

    def add(
        self,
        resource: Resource,
        item: str,
        quantity: float,
        price_key: str,
        factor: float = 1.0,
        note: str = "",
    ) -> None:
        """A line of `quantity` units at `prices.PRICES[price_key]` times `factor`."""
        price = prices.PRICES[price_key]
        unit_usd = price.usd * factor
        self.lines.append(
            CostLine(
                resource.name,
                resource.type,
                item,
                quantity,
                price.unit,
                round(unit_usd, 6),
                quantity * unit_usd,
                note,
            )
        )

    def unknown(self, resource: Resource, item: str, note: str) -> None:
        """A line with no price: counted as unknown, never as $0."""
        self.lines.append(CostLine(resource.name, resource.type, item, note=note))


def verdicts(
    plan: Plan, ledger: Ledger, priced: Collection[str], free: Collection[str]
) -> dict[str, str]:
    """Resource URN -> "priced", "free" or "unknown" once every family has added its lines.

    A resource with lines is priced (unknown if any of them is); one of a type a family prices
    but that came to no line (a NAT strategy of None) or of a type with no charge of its own is
    free; any other type gets an unknown line of its own.
    """
    with_lines = {(line.resource, line.type) for line in ledger.lines}
    pricing = {}
    for resource in plan.resources:
        if resource.type.startswith(COMPONENT_PREFIXES):
            continue
        if (resource.name, resource.type) in with_lines:
            unknown = any(
                line.monthly_usd is None
                for line in ledger.lines
                if (line.resource, line.type) == (resource.name, resource.type)
            )
            pricing[resource.urn] = "unknown" if unknown else "priced"
        elif resource.type in free or resource.type in priced:
            pricing[resource.urn] = "free"
        else:
            ledger.unknown(resource, "no price in preflight/prices.py", "unknown type")
            pricing[resource.urn] = "unknown"
    return pricing
