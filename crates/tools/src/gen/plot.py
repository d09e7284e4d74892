# Draws nvlb gen's summary (JSON on argv[1]) into a PNG (argv[2]): pps over time
# (sent and received) and each DIP's share of its pool's flows next to its weight.
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

summary = json.load(open(sys.argv[1]))
fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8))

t = [s["t"] for s in summary["timeline"]]
top.plot(t, [s["tx_pps"] for s in summary["timeline"]], label="sent")
top.plot(t, [s["rx_pps"] for s in summary["timeline"]], label="received")
top.set_xlabel("seconds")
top.set_ylabel("packets per second")
top.set_title(
    "nvlb gen: %d sent, %d received, loss %.3f %%, rtt p50 %.0f us p99 %.0f us"
    % (
        summary["sent"],
        summary["received"],
        summary["loss_percent"],
        summary["rtt"]["p50_us"],
        summary["rtt"]["p99_us"],
    )
)
top.legend()
top.grid(True, alpha=0.3)

rows = summary["dips"]
labels = ["%s\n%s" % (r["vip"], r["dip"]) for r in rows]
x = range(len(rows))
w = 0.4
bottom.bar([i - w / 2 for i in x], [r["expected_percent"] for r in rows], w, label="weight share")
bottom.bar([i + w / 2 for i in x], [r["percent"] for r in rows], w, label="observed flow share")
bottom.set_xticks(list(x))
bottom.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
bottom.set_ylabel("% of the pool's flows")
bottom.set_title(
    "per-DIP distribution: max deviation %.2f pp, wrong-tenant %d"
    % (summary["max_deviation_pp"], summary["wrong_tenant"])
)
bottom.legend()
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
