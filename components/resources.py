"""Options every component gives the resources it creates."""

from __future__ import annotations

from typing import Any

import pulumi


def child(
    parent: pulumi.Resource,
    was: str | None = None,
    was_parent: pulumi.Resource | pulumi.Input[str] | None = None,
    **options: Any,
) -> pulumi.ResourceOptions:
    """Options for a resource a component creates: parented to the component, and, when the
    resource had another logical name (``was``) or another parent (``was_parent``, a resource or
    a URN) before, aliased to them so Pulumi keeps its state instead of replacing it. In prod,
    protected data is never recreated by a rename; a container is not restarted for one.

    The aliases record where resources lived before the layout of components changed; they cost
    nothing once every stack has been updated and may be dropped in a later release."""
    aliases = None
    if was is not None or was_parent is not None:
        alias = pulumi.Alias(name=was) if was_parent is None else pulumi.Alias(name=was, parent=was_parent)
        aliases = [alias]
    return pulumi.ResourceOptions(parent=parent, aliases=aliases, **options)
