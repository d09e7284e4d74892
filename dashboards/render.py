#!/usr/bin/python3
"""Draws a Grafana dashboard of this folder from a live Prometheus, panel by panel, into
one PNG (matplotlib; no Grafana needed). Used by tests/lab_metrics.rs on the lab's real
data and for the pictures in docs/.

    render.py --url http://127.0.0.1:9090 --dashboard nvlb-overview.json --out x.png \
        [--window 120] [--var tenant=blue --var vip=.*]

Variables are substituted as Grafana would with the given values ($__rate_interval as
--rate). Exit status 1 when a panel's query fails or returns nothing.
"""
import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def substitute(expr, variables, rate):
    expr = expr.replace("$__rate_interval", rate)
    for k in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + k + "}", variables[k]).replace("$" + k, variables[k])
    return expr


def query_range(url, expr, start, end, step):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{q}", timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, metric):
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    return out or "value"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--window", type=float, default=120.0)
    ap.add_argument("--rate", default="15s")
    ap.add_argument("--var", action="append", default=[])
    a = ap.parse_args()
    variables = dict(v.split("=", 1) for v in a.var)
    with open(a.dashboard) as f:
        dash = json.load(f)
    panels = [p for p in dash["panels"] if p.get("targets")]
    end = time.time()
    start = end - a.window
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(15, 3.0 * rows), squeeze=False)
    title = dash["title"]
    if variables:
        title += "  (" + ", ".join(f"{k}={v}" for k, v in variables.items()) + ")"
    fig.suptitle(f"{title} — last {int(a.window)} s of the lab, from Prometheus", fontsize=13)
    empty = []
    for ax, p in zip(axes.flat, panels):
        ax.set_title(p["title"], fontsize=9)
        ax.tick_params(labelsize=7)
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        n = 0
        for t in p["targets"]:
            expr = substitute(t["expr"], variables, a.rate)
            for s in query_range(a.url, expr, start, end, 1):
                xs = [float(v[0]) - end for v in s["values"]]
                ys = [float(v[1]) for v in s["values"]]
                if p["type"] == "stat":
                    continue
                draw = ax.step if p["type"] == "state-timeline" else ax.plot
                draw(xs, ys, label=legend(t.get("legendFormat", ""), s["metric"]), linewidth=1)
                n += 1
            if p["type"] == "stat":
                res = query_range(a.url, expr, start, end, 1)
                last = [float(s["values"][-1][1]) for s in res if s["values"]]
                if last:
                    n += 1
                    val = last[0]
                    text = f"{val:.1%}" if unit == "percentunit" else f"{val:g}"
                    ax.text(0.5, 0.45, text, fontsize=22, ha="center", va="center",
                            transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
        if n == 0:
            empty.append(p["title"])
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        elif p["type"] != "stat":
            ax.set_xlabel("seconds", fontsize=7)
            if unit:
                ax.set_ylabel(unit, fontsize=7)
            if n <= 8:
                ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    fig.savefig(a.out, dpi=60)
    if empty:
        print("panels without data: " + "; ".join(empty), file=sys.stderr)
        return 1
    print(f"wrote {a.out} ({len(panels)} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
