"""The pieces every section of the stack config is built from: a strict model base whose
section rules report the exact key they concern, the secret type, and shared field types."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, model_validator
from pydantic_core import PydanticCustomError, core_schema

# The error type a section's own rules raise; its context lists (relative key, message) pairs.
SECTION_RULES = "section_rules"

Problem = tuple[str, str]


class ConfigSecret:
    """A config value that was set with ``pulumi config set --secret``.

    The plaintext never shows in ``repr`` or ``str``; use ``output()`` to hand it to a resource as
    a secret Output.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def output(self) -> Any:
        import pulumi

        return pulumi.Output.secret(self._value)

    def __repr__(self) -> str:
        return "ConfigSecret([secret])"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigSecret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def check(value: Any) -> ConfigSecret:
            if isinstance(value, ConfigSecret):
                return value
            raise PydanticCustomError(
                "plaintext_secret",
                "must be a secret value: set it with `pulumi config set --secret` "
                "(the stack file then holds a `secure:` value)",
            )

        return core_schema.no_info_plain_validator_function(check)


class Model(BaseModel):
    """A strict, closed config section: a typo or a wrong type is an error, never a default.

    A section that ties its own fields together overrides ``problems``; each problem names the
    key it concerns relative to the section ("" for the section itself), so the error names the
    exact key path of the stack file.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def problems(self) -> Iterator[Problem]:
        return iter(())

    @model_validator(mode="after")
    def _section_rules(self) -> Self:
        found = list(self.problems())
        if found:
            raise PydanticCustomError(
                SECTION_RULES,
                "{summary}",
                {"summary": "; ".join(message for _, message in found), "problems": found},
            )
        return self


DNS_NAME = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
IMAGE_REF = r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
ROLE = r"^(roles/[A-Za-z0-9_.]+|projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/roles/[A-Za-z0-9_.]+)$"
HOURS_MINUTES = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
KMS_KEY = r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$"
GCP_PROJECT = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$"
GCP_LOCATION = r"^[a-z]+-[a-z]+[0-9]+$"
# A Secret Manager secret ID.
RESOURCE_ID = r"^[A-Za-z0-9_-]{1,255}$"

DnsName = Annotated[str, Field(pattern=DNS_NAME, max_length=253)]
Port = Annotated[int, Field(ge=1, le=65535)]
KmsKey = Annotated[str, Field(pattern=KMS_KEY)]
