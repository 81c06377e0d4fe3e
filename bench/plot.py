#!/usr/bin/env python3
"""attn-bench's plot: median time against N, log-log, one line per
implementation (solid: non-causal, dashed: causal), from attn-bench's CSV.

    python3 bench/plot.py results.csv results.png

Exit status: 0 written, 2 bad input, 3 matplotlib is missing."""
import csv
import sys


def main(argv):
    if len(argv) != 3:
        print("usage: plot.py CSV PNG", file=sys.stderr)
        return 2
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py: matplotlib is not installed: pip install matplotlib",
              file=sys.stderr)
        return 3
    lines = {}  # (label, causal) -> {n: ms}
    with open(argv[1], newline="") as f:
        for r in csv.DictReader(f):
            if not r.get("median_ms"):
                continue  # skipped or failed rows
            key = (r["impl"], int(r["causal"]))
            lines.setdefault(key, {})[int(r["n"])] = float(r["median_ms"])
    if not lines:
        print("plot.py: no timed rows in %s" % argv[1], file=sys.stderr)
        return 2
    labels = sorted({k[0] for k in lines})
    cmap = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    color = {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(11, 7))
    for (lab, causal), pts in sorted(lines.items()):
        ns = sorted(pts)
        ax.plot(ns, [pts[n] for n in ns], marker="o", markersize=4,
                linestyle="--" if causal else "-", color=color[lab],
                label="%s%s" % (lab, " (causal)" if causal else ""))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ns_all = sorted({n for pts in lines.values() for n in pts})
    ax.set_xticks(ns_all)
    ax.set_xticklabels([str(n) for n in ns_all])
    ax.set_xlabel("N (seq_q = seq_kv; decode rows: seq_kv)")
    ax.set_ylabel("median time per call (ms)")
    ax.set_title("attn-bench: B=1, H=8, d=64, f32 (solid: non-causal, "
                 "dashed: causal)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
