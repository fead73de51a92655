"""The stagecraft policy pack. Building the PolicyPack serves the Analyzer gRPC protocol and
never returns; the rules live in stagecraft_policy so tests and preflight can import them."""

from pulumi_policy import EnforcementLevel, PolicyPack
from stagecraft_policy import POLICIES

PolicyPack(
    name="stagecraft",
    policies=POLICIES,
    enforcement_level=EnforcementLevel.MANDATORY,
    description="Keeps staging apart from production and blocks the classic mistakes.",
)
