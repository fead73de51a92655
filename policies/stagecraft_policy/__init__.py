"""stagecraft's CrossGuard rules, grouped by concern."""

from pulumi_policy import Policy

from stagecraft_policy.containers import CONTAINER_POLICIES
from stagecraft_policy.hygiene import HYGIENE_POLICIES
from stagecraft_policy.iam import IAM_POLICIES
from stagecraft_policy.isolation import ISOLATION_POLICIES
from stagecraft_policy.storage import STORAGE_POLICIES

POLICIES: list[Policy] = [
    *ISOLATION_POLICIES,
    *IAM_POLICIES,
    *STORAGE_POLICIES,
    *CONTAINER_POLICIES,
    *HYGIENE_POLICIES,
]

__all__ = ["POLICIES"]
