"""deploy/grafana/gthreadd.json and deploy/prometheus/gthreadd-rules.yaml ask only for metrics a
running daemon really exports: every metric name in every query is checked against a scrape of an
in-process daemon whose registry carries the daemon's own metrics and vLLM's per-engine ones
(engine/metrics.py), as `gthreadd` builds it. The rules pass Debian's promtool (make test installs
it)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from engine.metrics import EngineMetrics
from gthreadd.observe.metrics import Metrics
from tests.inprocess_daemon import start_daemon

DEPLOY = Path(__file__).parents[3] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "gthreadd.json"
RULES = DEPLOY / "prometheus" / "gthreadd-rules.yaml"
METRIC = re.compile(r"\b(gthread_[a-z0-9_]+|vllm:[a-z0-9_:]+|process_[a-z0-9_]+)")
SAMPLES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
           "gauge": ("",), "unknown": ("",)}


def queries(dashboard: dict) -> list[tuple[str, str]]:
    found = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    found += [("variable " + v["name"], v["definition"]) for v in dashboard["templating"]["list"] if "definition" in v]
    return found


def rules() -> list[tuple[str, str]]:
    return [(r["alert"], r["expr"]) for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


async def test_every_query_names_metrics_the_daemon_exports(tmp_path):
    metrics = Metrics()
    EngineMetrics(metrics.registry)
    d = await start_daemon(tmp_path, metrics=metrics)
    try:
        async with aiohttp.ClientSession() as s, s.get(d.base_url + "/metrics") as r:
            text = await r.text()
    finally:
        await d.shutdown()
    exported = {f.name + suffix for f in text_string_to_metric_families(text) for suffix in SAMPLES[f.type]}
    dashboard = json.loads(DASHBOARD.read_text())
    for title, expr in queries(dashboard) + rules():
        names = METRIC.findall(expr)
        assert names, f"{title}: no metric in {expr!r}"
        unknown = [n for n in names if n not in exported]
        assert not unknown, f"panel {title!r} asks for {unknown}, which the daemon does not export"
    assert {"gthread_engine_operation_seconds_bucket", "vllm:time_to_first_token_seconds_bucket",
            "gthread_time_to_first_token_seconds_bucket", "process_cpu_seconds_total"} <= {
        n for _, e in queries(dashboard) for n in METRIC.findall(e)}


def test_the_alert_rules_pass_promtool():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is Debian's prometheus package (make test installs it)"
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and f"SUCCESS: {len(rules())} rules found" in result.stdout, result.stdout + result.stderr


def test_a_restart_is_not_alerted_as_failed_and_one_that_stays_down_is(tmp_path):
    """promtool's rule unit tests: a model restarting (its engine died, back after a backoff) never
    fires GthreadModelFailed; restarting for ten minutes fires GthreadModelRestarting; failed (given
    up on) fires GthreadModelFailed after five."""
    def state(model: str, name: str, values: str) -> dict:
        return {"series": f'gthread_model_state{{instance="h", model="{model}", state="{name}"}}', "values": values}

    def alert(model: str, severity: str) -> dict:
        return {"exp_labels": {"instance": "h", "model": model, "severity": severity}}

    cases = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [state("blip", "restarting", "1x2 0x20"), state("blip", "failed", "0x22"),
                         state("down", "restarting", "1x22"), state("down", "failed", "0x22"),
                         state("gone", "restarting", "0x22"), state("gone", "failed", "1x22")],
        "alert_rule_test": [
            {"eval_time": "12m", "alertname": "GthreadModelRestarting", "exp_alerts": [alert("down", "warning")]},
            {"eval_time": "12m", "alertname": "GthreadModelFailed", "exp_alerts": [alert("gone", "critical")]},
        ]}]}
    for case in cases["tests"][0]["alert_rule_test"]:  # promtool compares the annotations too
        for expected in case["exp_alerts"]:
            rule = next(r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
                        if r["alert"] == case["alertname"])
            model, instance = expected["exp_labels"]["model"], expected["exp_labels"]["instance"]
            expected["exp_annotations"] = {k: v.replace("{{ $labels.model }}", model).replace(
                "{{ $labels.instance }}", instance) for k, v in rule["annotations"].items()}
    (tmp_path / "rules-test.yaml").write_text(yaml.safe_dump(cases))
    result = subprocess.run([shutil.which("promtool"), "test", "rules", str(tmp_path / "rules-test.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
