"""stagecraft's CrossGuard rules, grouped by concern; settings.json holds this repository's values."""

from pulumi_policy import Policy

from stagecraft_policy.containers import CONTAINER_POLICIES
from stagecraft_policy.docker import DOCKER_POLICIES
from stagecraft_policy.gcp import GCP_POLICIES
from stagecraft_policy.hygiene import HYGIENE_POLICIES
from stagecraft_policy.iam import IAM_POLICIES
from stagecraft_policy.isolation import ISOLATION_POLICIES
from stagecraft_policy.resource_types import TYPE_POLICIES
from stagecraft_policy.stack_rules import STACK_POLICIES
from stagecraft_policy.storage import STORAGE_POLICIES

POLICIES: list[Policy] = [
    *TYPE_POLICIES,
    *GCP_POLICIES,
    *IAM_POLICIES,
    *ISOLATION_POLICIES,
    *STORAGE_POLICIES,
    *HYGIENE_POLICIES,
    *CONTAINER_POLICIES,
    *DOCKER_POLICIES,
    *STACK_POLICIES,
]

__all__ = ["POLICIES"]
