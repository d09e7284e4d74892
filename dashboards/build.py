#!/usr/bin/python3
"""Writes the Grafana dashboards of this folder (nvlb-*.json) from the panel lists below.

The JSON files are what Grafana loads (see provisioning/); this script only keeps the
three of them consistent (one datasource variable, the same tenant/VIP variables, the
same panel shapes). Edit here, run `/usr/bin/python3 dashboards/build.py`, commit both.
"""
import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
SEL = 'tenant=~"$tenant", vip=~"$vip"'


def datasource_var():
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_var(name, label, query, multi=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "includeAll": multi,
        "multi": multi,
        "allValue": ".*",
        "current": {},
        "options": [],
        "sort": 1,
        "hide": 0,
        "regex": "",
    }


def tenant_vars():
    return [
        query_var("tenant", "Tenant", "label_values(nvlb_vip_info, tenant)"),
        query_var("vip", "VIP", 'label_values(nvlb_vip_info{tenant=~"$tenant"}, vip)'),
    ]


def panel(title, targets, unit="short", kind="timeseries", desc="", stack=False):
    p = {
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": e, "legendFormat": l,
             "range": kind != "table", "instant": kind == "table"}
            for i, (e, l) in enumerate(targets)
        ],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10 if stack else 0,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        }
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    if kind == "state-timeline":
        p["fieldConfig"]["defaults"]["mappings"] = [
            {"type": "value", "options": {"0": {"text": "down", "color": "red"},
                                          "1": {"text": "up", "color": "green"}}}]
        p["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
        p["fieldConfig"]["defaults"]["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}]}
    return p


def layout(panels, width=12, height=8):
    """Two panels per row, stats four per row."""
    x = y = 0
    row_h = 0
    for p in panels:
        w = 6 if p["type"] == "stat" else width
        h = 4 if p["type"] == "stat" else height
        if x + w > 24:
            x = 0
            y += row_h
            row_h = 0
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
        row_h = max(row_h, h)
    for i, p in enumerate(panels):
        p["id"] = i + 1
    return panels


def dashboard(uid, title, desc, variables, panels):
    return {
        "uid": uid,
        "title": title,
        "description": desc,
        "tags": ["nvlb"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "annotations": {"list": []},
        "links": [{"title": "nvlb dashboards", "type": "dashboards", "tags": ["nvlb"],
                   "asDropdown": True}],
        "templating": {"list": [datasource_var()] + variables},
        "panels": layout(panels),
    }


overview = dashboard(
    "nvlb-overview", "nvlb / Overview",
    "The LB as a whole: throughput, drops by reason, flows, flow-table fill, handoffs.",
    [],
    [
        panel("VIPs without a healthy DIP", [("count(nvlb_pool_healthy_dips == 0) or vector(0)", "pools")], kind="stat"),
        panel("Active flows", [("sum(nvlb_active_flows)", "flows")], kind="stat"),
        panel("Flow table fill (fullest shard)", [("max(nvlb_active_flows / nvlb_flow_table_capacity)", "fill")], unit="percentunit", kind="stat"),
        panel("Scrape targets up", [('sum(up{job=~"nvlb|nvlb-host"})', "up")], kind="stat"),
        panel("Packets per second", [
            (f"sum(rate(nvlb_received_packets_total[{RATE}]))", "received"),
            (f"sum by (kind) (rate(nvlb_sent_packets_total[{RATE}]))", "sent {{kind}}"),
        ], unit="pps"),
        panel("Bits per second", [
            (f"8 * sum(rate(nvlb_received_bytes_total[{RATE}]))", "received"),
            (f"8 * sum(rate(nvlb_sent_bytes_total[{RATE}]))", "sent"),
        ], unit="bps"),
        panel("Drops by reason", [
            (f"topk(10, sum by (reason) (rate(nvlb_drops_total[{RATE}])))", "{{reason}}"),
        ], unit="pps", stack=True, desc="Reasons are listed in docs/metrics.md."),
        panel("New flows per second", [
            (f"sum(rate(nvlb_new_flows_total[{RATE}]))", "new flows"),
            (f"sum by (outcome) (rate(nvlb_idle_resets_total[{RATE}]))", "idle-reset RSTs {{outcome}}"),
        ], unit="ops", desc="Idle-reset RSTs: two per TCP flow of a tcp_reset rule that timed out idle; not_sent means they were lost (docs/metrics.md)."),
        panel("Active flows per shard", [("sum by (shard) (nvlb_active_flows)", "shard {{shard}}")], stack=True),
        panel("Active flows per tenant", [("sum by (tenant) (nvlb_tenant_active_flows)", "{{tenant}}")], stack=True),
        panel("Flow table fill per shard", [
            ("max by (shard) (nvlb_active_flows / nvlb_flow_table_capacity)", "shard {{shard}}"),
        ], unit="percentunit"),
        panel("Handoffs between workers", [
            (f"sum(rate(nvlb_handoffs_total[{RATE}]))", "handed over"),
            (f'sum(rate(nvlb_drops_total{{reason=~"handoff_.*"}}[{RATE}]))', "lost"),
        ], unit="pps"),
        panel("Host simulators: NVGRE in / out", [
            (f"sum by (instance) (rate(nvlb_host_decapsulated_packets_total[{RATE}]))", "{{instance}} decapsulated"),
            (f"sum by (instance) (rate(nvlb_host_encapsulated_packets_total[{RATE}]))", "{{instance}} encapsulated"),
        ], unit="pps"),
        panel("Host simulators: drops", [
            (f"topk(5, sum by (reason) (rate(nvlb_host_drops_total[{RATE}])))", "{{reason}}"),
        ], unit="pps", stack=True),
    ],
)

tenant = dashboard(
    "nvlb-tenant", "nvlb / Tenant and VIP",
    "One tenant's VIPs: traffic per VIP and direction, distribution over DIPs, DIP health.",
    tenant_vars(),
    [
        panel("Packets per second by VIP and direction", [
            (f"sum by (vip, direction) (rate(nvlb_vip_packets_total{{{SEL}}}[{RATE}]))", "{{vip}} {{direction}}"),
        ], unit="pps"),
        panel("Bits per second sent by VIP and direction", [
            (f"8 * sum by (vip, direction) (rate(nvlb_vip_sent_bytes_total{{{SEL}}}[{RATE}]))", "{{vip}} {{direction}}"),
        ], unit="bps"),
        panel("New flows per second by VIP", [
            (f"sum by (vip) (rate(nvlb_vip_new_flows_total{{{SEL}}}[{RATE}]))", "{{vip}}"),
        ], unit="ops"),
        panel("Active flows by VIP", [
            (f"sum by (vip) (nvlb_vip_active_flows{{{SEL}}})", "{{vip}}"),
        ], stack=True),
        panel("Packets to each DIP (client to DIP)", [
            (f'sum by (vip, dip) (rate(nvlb_dip_packets_total{{{SEL}, direction="forward"}}[{RATE}]))', "{{vip}} {{dip}}"),
        ], unit="pps", stack=True),
        panel("Active flows per DIP", [
            (f"sum by (vip, dip) (nvlb_dip_active_flows{{{SEL}}})", "{{vip}} {{dip}}"),
        ], stack=True),
        panel("DIP health", [
            (f"max by (vip, dip) (nvlb_dip_up{{{SEL}}})", "{{vip}} {{dip}}"),
        ], kind="state-timeline"),
        panel("Healthy DIPs per VIP", [
            (f"sum by (vip) (nvlb_pool_healthy_dips{{{SEL}}})", "{{vip}} healthy"),
            (f"sum by (vip) (nvlb_pool_dips{{{SEL}}})", "{{vip}} declared"),
        ]),
        panel("Tenant's active flows per shard", [
            ('sum by (tenant, shard) (nvlb_tenant_active_flows{tenant=~"$tenant"})', "{{tenant}} shard {{shard}}"),
        ], stack=True),
        panel("Health probe latency (p50 / p99)", [
            (f"histogram_quantile(0.5, sum by (le, vip) (rate(nvlb_health_probe_duration_seconds_bucket{{{SEL}}}[{RATE}])))", "{{vip}} p50"),
            (f"histogram_quantile(0.99, sum by (le, vip) (rate(nvlb_health_probe_duration_seconds_bucket{{{SEL}}}[{RATE}])))", "{{vip}} p99"),
        ], unit="s"),
    ],
)

control = dashboard(
    "nvlb-control-plane", "nvlb / Control plane",
    "Policy reloads, DIP health changes, health probes, the management API, source-NAT ports.",
    tenant_vars(),
    [
        panel("Config generation", [("max(nvlb_config_generation)", "generation")], kind="stat"),
        panel("Last reload succeeded", [("min(nvlb_config_last_reload_success)", "ok")], kind="stat"),
        panel("Since last reload", [("time() - max(nvlb_config_last_reload_timestamp_seconds)", "age")], unit="s", kind="stat"),
        panel("DIPs down", [("count(nvlb_dip_up == 0) or vector(0)", "down")], kind="stat"),
        panel("Reloads", [
            ("sum by (result) (increase(nvlb_config_reloads_total[5m]))", "{{result}}"),
        ]),
        panel("DIP health changes", [
            (f"sum by (vip, dip) (increase(nvlb_dip_health_changes_total{{{SEL}}}[5m]))", "{{vip}} {{dip}}"),
        ]),
        panel("DIPs up per VIP", [
            (f"sum by (vip) (nvlb_dip_up{{{SEL}}})", "{{vip}}"),
        ]),
        panel("Health probes per second", [
            (f"sum by (vip) (rate(nvlb_health_probe_duration_seconds_count{{{SEL}}}[{RATE}]))", "{{vip}}"),
        ], unit="ops"),
        panel("Health probe latency p99", [
            (f"histogram_quantile(0.99, sum by (le, vip) (rate(nvlb_health_probe_duration_seconds_bucket{{{SEL}}}[{RATE}])))", "{{vip}}"),
        ], unit="s"),
        panel("API requests by status code", [
            (f"sum by (code) (rate(nvlb_api_requests_total[{RATE}]))", "{{code}}"),
        ], unit="reqps", stack=True),
        panel("Source-NAT ports in use (busiest DIP endpoint)", [
            ("max by (vsid) (nvlb_nat_ports_in_use)", "VSID {{vsid}}"),
        ]),
        panel("Source-NAT ports free", [
            ("min by (vsid) (nvlb_nat_ports_free)", "VSID {{vsid}}"),
            ("min by (vsid) (nvlb_nat_ports_free / nvlb_nat_ports)", "VSID {{vsid}} (fraction)"),
        ]),
    ],
)

here = os.path.dirname(os.path.abspath(__file__))
for name, d in [("nvlb-overview", overview), ("nvlb-tenant", tenant), ("nvlb-control-plane", control)]:
    with open(os.path.join(here, name + ".json"), "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
