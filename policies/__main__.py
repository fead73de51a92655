"""The stagecraft policy pack. Building the PolicyPack serves the Analyzer gRPC protocol and
never returns; the rules live in stagecraft_policy so tests and preflight can import them.

Exit code 2, with one line on stderr, if policies/stagecraft_policy/settings.json is unusable."""

import sys

from pulumi_policy import EnforcementLevel, PolicyPack

try:
    from stagecraft_policy import POLICIES
except Exception as error:
    # settings.json is read while the rules load, so its error can only be told apart by name.
    if type(error).__name__ != "SettingsError":
        raise
    sys.stderr.write(f"stagecraft policy pack: {error}\n")
    sys.exit(2)

PolicyPack(
    name="stagecraft",
    policies=POLICIES,
    enforcement_level=EnforcementLevel.MANDATORY,
    description="Keeps staging apart from production and allows only what stagecraft deploys.",
)
