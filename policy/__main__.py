"""The CrossGuard policy pack: ``pulumi preview --policy-pack policy``.

The rules are plain functions in ``rules.py`` (tested on the mocked program's resources in
``tests/policy``); this file only wraps them into Pulumi's policy types.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

# The engine runs this file from the pack's directory: the project root makes `policy.rules`
# and the `config.facts` it imports importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from policy.rules import RULES, Resource, Rule  # noqa: E402

_LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}


def _policy(rule: Rule) -> Policy:
    check_resource, check_stack = rule.check_resource, rule.check_stack
    level = _LEVELS[rule.enforcement]
    if check_resource is not None:

        def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
            for message in check_resource(args.resource_type, args.props):
                report(message, None)

        return ResourceValidationPolicy(rule.name, rule.description, validate, level)
    assert check_stack is not None

    def validate_stack(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = [Resource(r.resource_type, r.name, r.props) for r in args.resources]
        for message in check_stack(resources):
            report(message, None)

    return StackValidationPolicy(rule.name, rule.description, validate_stack, level)


PolicyPack(name="gpu-sharing-guardrails", policies=[_policy(r) for r in RULES])
