"""Docker labels in the shapes the provider's resources take."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi_docker as docker


def container_labels(labels: Mapping[str, str]) -> list[docker.ContainerLabelArgs]:
    return [docker.ContainerLabelArgs(label=key, value=value) for key, value in sorted(labels.items())]


def volume_labels(labels: Mapping[str, str]) -> list[docker.VolumeLabelArgs]:
    return [docker.VolumeLabelArgs(label=key, value=value) for key, value in sorted(labels.items())]


def network_labels(labels: Mapping[str, str]) -> list[docker.NetworkLabelArgs]:
    return [docker.NetworkLabelArgs(label=key, value=value) for key, value in sorted(labels.items())]
