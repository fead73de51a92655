"""Grafana: provisioned datasource and dashboards from data files."""

from __future__ import annotations

import json

import yaml

from components.services.grafana import dashboard_names, render_dashboard, render_datasource


def test_grafana_provisioning_points_at_prometheus() -> None:
    datasource = yaml.safe_load(render_datasource("http://acme-staging-prometheus:9090"))
    assert datasource["datasources"][0]["url"] == "http://acme-staging-prometheus:9090"
    assert "overview" in dashboard_names()
    for name in dashboard_names():
        dashboard = json.loads(render_dashboard(name, "staging"))
        assert dashboard["uid"].startswith("stagecraft-staging") and "staging" in dashboard["tags"]
        assert dashboard["panels"] and all(p["datasource"]["uid"] == "prometheus" for p in dashboard["panels"])
