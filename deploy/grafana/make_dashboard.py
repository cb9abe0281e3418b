"""Writes dashboards/odin-stream.json (the provisioned Grafana dashboard). Edit the panels
here and rerun `python3 deploy/grafana/make_dashboard.py`; metric names are checked against
the crates by scripts/check-deploy.sh."""

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "prometheus"}
panels: list[dict] = []


def panel(title, exprs, x, y, w=12, h=8, unit="short", kind="timeseries", desc=""):
    p = {
        "id": len(panels) + 1, "type": kind, "title": title, "description": desc, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": e, "legendFormat": legend}
                    for i, (e, legend) in enumerate(exprs)],
    }
    if kind == "timeseries":
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    else:
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area"}
    panels.append(p)


def row(title, y):
    panels.append({"id": len(panels) + 1, "type": "row", "title": title, "collapsed": False,
                   "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})


def quantiles(metric, selector=""):
    return [(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{selector}[1m])))", f"p{int(q * 100)}")
            for q in (0.5, 0.99)]


row("Overview", 0)
panel("Connections", [("sum(ws_connections)", "connections")], 0, 1, 6, 4, kind="stat",
      desc="Open WebSocket connections over every gateway.")
panel("Deliveries / s", [("sum(rate(ws_deliveries_total[1m]))", "deliveries/s")], 6, 1, 6, 4, unit="ops", kind="stat")
panel("Published events / s", [('sum(rate(kafka_produce_records_total{job="publisher",result="ok"}[1m]))', "events/s")],
      12, 1, 6, 4, unit="ops", kind="stat")
panel("Gateways connected to Kafka", [("sum(ws_kafka_connected)", "connected"), ("count(ws_kafka_connected)", "gateways")],
      18, 1, 6, 4, kind="stat", desc="ws_kafka_connected is 1 per gateway whose Kafka client answers.")

row("Gateway", 5)
panel("Connections per gateway", [("ws_connections", "{{instance}}")], 0, 6)
panel("Deliveries / s per gateway", [("sum by (instance) (rate(ws_deliveries_total[1m]))", "{{instance}}")], 12, 6, unit="ops")
panel("Dropped messages / s by reason", [("sum by (reason) (rate(ws_messages_dropped_total[1m]))", "{{reason}}")], 0, 14,
      unit="ops", desc="Frames not delivered: slow clients, full queues, closing connections.")
panel("Consumer lag (records) by topic",
      [("sum by (topic) (max by (topic, partition) (ws_kafka_consumer_lag))", "{{topic}}")], 12, 14,
      desc="Records behind the high-watermark; the worst gateway per partition, summed per topic.")
panel("Fan-out latency (record fetched → queued to clients)", quantiles("ws_fanout_latency_seconds"), 0, 22, unit="s")
panel("Records consumed / s by topic", [("sum by (topic) (rate(ws_kafka_records_consumed_total[1m]))", "{{topic}}")],
      12, 22, unit="ops")

row("Publisher", 30)
panel("Publish rate by topic", [('sum by (topic, result) (rate(kafka_produce_records_total{job="publisher"}[1m]))',
                                 "{{topic}} {{result}}")], 0, 31, unit="ops")
panel("Produce batch latency (until broker ack)", quantiles("kafka_produce_batch_seconds", '{job="publisher"}'), 12, 31, unit="s")

row("Aggregator", 39)
panel("Aggregate publish latency (until broker ack)", quantiles("kafka_produce_batch_seconds", '{job="aggregator"}'), 0, 40,
      unit="s", desc="Time from sending a batch of aggregates to aggregate-info until the broker acknowledged it.")
panel("Aggregates published / s", [("sum by (result) (rate(aggregator_published_total[1m]))", "{{result}}"),
                                   ("sum(rate(aggregator_trades_total[1m]))", "trades in")], 12, 40, unit="ops")
panel("Aggregator consumer lag (records)", [("sum by (topic) (aggregator_consumer_lag)", "{{topic}}")], 0, 48)
panel("Invalid trades / s (dead-lettered)", [("sum(rate(aggregator_records_invalid_total[1m]))", "invalid"),
                                             ("sum(rate(ws_kafka_records_invalid_total[1m]))", "gateway invalid")], 12, 48, unit="ops")

dashboard = {
    "uid": "odin-stream", "title": "Odin Stream", "tags": ["odin-stream"], "timezone": "utc",
    "schemaVersion": 39, "version": 1, "refresh": "5s", "time": {"from": "now-15m", "to": "now"},
    "editable": False, "graphTooltip": 1, "templating": {"list": []}, "annotations": {"list": []},
    "panels": panels,
}
out = Path(__file__).with_name("dashboards") / "odin-stream.json"
out.write_text(json.dumps(dashboard, indent=2) + "\n")
print(f"wrote {out} ({len(panels)} panels)")
