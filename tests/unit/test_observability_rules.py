"""The alert rules and the Grafana dashboard in deploy/ name only metrics the code exports:
the rules file parses as Prometheus rules, has the alerts the issue asks for, and every
metric in an alert's or a panel's expression is in a service's registry after a few calls
(or is one of Triton's own, which the services do not export)."""

from __future__ import annotations

import json
import re

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.metrics_core import Metric

from shared.paths import REPO_ROOT
from shared.rpc import metrics
from shared.rpc.server import build_server

pytestmark = pytest.mark.unit

FOLDER = REPO_ROOT / "deploy" / "components" / "observability"
RULES = FOLDER / "prometheus-rules.yaml"
DASHBOARD = FOLDER / "grafana-dashboard.json"
# Triton's own metrics (its /metrics on port 8002), which the dashboard shows beside ours.
TRITON = {
    "nv_inference_count",
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
}
# What the issue asks the alerts to watch, each as a metric its expression must use.
ASKED = {
    "error rate": "grpc_server_handled_total",
    "p99": "grpc_server_handling_seconds_bucket",
    "degraded share": "shopsense_searches_degraded_total",
    "guard-rail stops": "shopsense_guard_rail_stops_total",
    "feedback rejection rate": "shopsense_feedback_events_total",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: label matchers, groupings, ranges,
    strings and numbers removed, identifiers not called as functions."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr))
    return {n for n in names if n not in {"and", "or", "unless", "bool", "offset", "inf", "nan"}}


def test_metric_names_reads_a_promql_expression() -> None:
    expr = 'sum by (le) (rate(a_bucket{x="y(z)"}[5m])) / scalar(sum(b_total)) > 0.5'
    assert metric_names(expr) == {"a_bucket", "b_total"}


def _sample_names(family: Metric) -> set[str]:
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created"),
    }.get(family.type, ("",))
    return {family.name + suffix for suffix in suffixes}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every metric name the services' registries hold once their code has run: a server's
    RPC metrics after real calls, and each service's product metrics as the servers
    create them."""
    import services.feedback.server
    import services.trainer.experiments
    import services.trainer.jobs  # noqa: F401
    from services.gateway.metrics import SearchMetrics
    from services.retrieval.server import _watch_reindex
    from shared.search.catalog_index import CatalogIndex

    SearchMetrics()
    index = CatalogIndex.open(tmp_path_factory.mktemp("catalog") / "catalog.db")
    _watch_reindex(index)
    handle = build_server("gateway", lambda server: None, [])
    try:
        with grpc.insecure_channel(handle.address) as channel:
            for _ in range(3):
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    finally:
        handle.stop(0)
        index.close()
    names: set[str] = set()
    for service in ("gateway", "feedback", "trainer", "retrieval"):
        for family in metrics.registry(service).collect():
            names |= _sample_names(family)
    return names


def _rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_rules_file_is_a_prometheus_rules_file_with_the_asked_alerts() -> None:
    rules = _rules()
    assert rules
    for rule in rules:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
    used = {name for rule in rules for name in metric_names(rule["expr"])}
    missing = {what: name for what, name in ASKED.items() if name not in used}
    assert not missing, missing


def test_every_alert_reads_metrics_the_code_exports(exported: set[str]) -> None:
    for rule in _rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, (rule["alert"], sorted(names - exported))


def test_every_dashboard_panel_reads_metrics_the_code_or_triton_exports(
    exported: set[str],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= exported | TRITON, (panel["title"], sorted(names - exported - TRITON))


def test_the_kustomization_generates_config_maps_from_the_rules_and_the_dashboard() -> None:
    kustomization = yaml.safe_load((FOLDER / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {
        entry.rpartition("=")[2]
        for generator in kustomization["configMapGenerator"]
        for entry in generator["files"]
    }
    assert {DASHBOARD.name, "prometheus-rules.yaml"} <= files
