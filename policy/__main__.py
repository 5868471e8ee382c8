"""The mlops CrossGuard policy pack: every check in `policy/checks.py`, mandatory.

`pulumi preview --policy-pack policy` (or `up`) runs this file as `__main__` from the pack
directory; the checks are plain functions shared with `python -m preflight.plan`, which reports
the same findings offline.

Resource policies see a resource's inputs before it is created or updated, so a violation stops
the update. Stack policies (rules between resources) see the whole stack and, during `up`, run
after the resources changed: the PR preview is where they block. A value unknown during preview
(an image digest not built yet) makes the SDK skip that policy for that resource with an advisory
note; it runs during `up`, when the value is known.
"""

from __future__ import annotations

# The analyzer runs this directory (`runpy.run_path(<pack directory>)`, pulumi/policy/__main__.py),
# which puts it first on sys.path: `checks` is the module beside this file, with no import from
# outside the pack.
import checks
from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

PACK_NAME = "mlops"


def resource_policy(check: checks.Check) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check.validate(args.resource_type, args.props):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=check.name,
        description=check.description,
        enforcement_level=(
            EnforcementLevel.ADVISORY if check.advisory else EnforcementLevel.MANDATORY
        ),
        validate=validate,
    )


def stack_policy(check: checks.StackCheck) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [checks.StackResource(r.resource_type, r.name, r.props) for r in args.resources]
        for message in check.validate(resources):
            report_violation(message, None)

    return StackValidationPolicy(
        name=check.name,
        description=check.description,
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=validate,
    )


POLICIES = [
    *(resource_policy(check) for check in checks.RESOURCE_CHECKS),
    *(stack_policy(check) for check in checks.STACK_CHECKS),
]

if __name__ == "__main__":
    # Starts the analyzer's gRPC server and serves the engine until it exits.
    PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
