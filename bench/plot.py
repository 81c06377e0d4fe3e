#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""attn-bench's plot: median time (left) and TFLOP/s (right) against N,
log-log, one line per implementation and shape (solid: non-causal, dashed:
causal), from attn-bench's CSV.  Decode rows (seq_q < N) are their own
lines, against seq_kv = N.

    python3 bench/plot.py results.csv results.png

Reads the CSVs of earlier attn-bench versions too (no head_dim, dtype or
tflops columns: d=64, f32, TFLOP/s from gflops).
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
    rows = []
    with open(argv[1], newline="") as f:
        for r in csv.DictReader(f):
            if not r.get("median_ms"):
                continue  # skipped or failed rows
            tf = r.get("tflops") or ""
            rows.append({
                "label": r["impl"], "causal": int(r["causal"]),
                "n": int(r["n"]), "ms": float(r["median_ms"]),
                "tflops": float(tf) if tf else float(r["gflops"]) / 1e3,
                "d": r.get("head_dim") or "64", "dtype": r.get("dtype") or "f32",
                "shape": "B=%s H=%s/%s" % (r.get("batch") or "1",
                                           r.get("heads") or "8",
                                           r.get("kv_heads") or "8"),
                "timing": r.get("timing") or "host"})
    if not rows:
        print("plot.py: no timed rows in %s" % argv[1], file=sys.stderr)
        return 2
    # name only what differs between the rows
    many = {k: len({r[k] for r in rows}) > 1
            for k in ("d", "dtype", "shape", "timing")}
    lines = {}  # (name, causal) -> {n: row}
    for r in rows:
        name = r["label"]
        if many["d"]:
            name += " d=" + r["d"]
        if many["dtype"]:
            name += " " + r["dtype"]
        if many["shape"]:
            name += " " + r["shape"]
        if many["timing"]:
            name += " [%s]" % r["timing"]
        lines.setdefault((name, r["causal"]), {})[r["n"]] = r
    names = sorted({k[0] for k in lines})
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    color = {lab: cmap(i % cmap.N) for i, lab in enumerate(names)}
    fig, axes = plt.subplots(1, 2, figsize=(16, 7))
    ns_all = sorted({r["n"] for r in rows})
    for ax, key, ylabel in ((axes[0], "ms", "median time per call (ms)"),
                            (axes[1], "tflops", "TFLOP/s (causal: half the "
                                                "FLOPs counted)")):
        for (lab, causal), pts in sorted(lines.items()):
            ns = sorted(pts)
            ys = [pts[n][key] for n in ns]
            if key == "tflops" and not all(y > 0 for y in ys):
                continue
            ax.plot(ns, ys, marker="o", markersize=4,
                    linestyle="--" if causal else "-", color=color[lab],
                    label="%s%s" % (lab, " (causal)" if causal else ""))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ns_all)
        ax.set_xticklabels([str(n) for n in ns_all])
        ax.set_xlabel("N (seq_q = seq_kv; decode rows: seq_kv)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left", ncol=2)
    shapes = sorted({r["shape"] for r in rows})
    dims = sorted({r["d"] for r in rows}, key=int)
    dtypes = sorted({r["dtype"] for r in rows})
    timings = sorted({r["timing"] for r in rows})
    fig.suptitle("attn-bench: %s, d=%s, %s; timing: %s (solid: non-causal, "
                 "dashed: causal)" % (", ".join(shapes), ",".join(dims),
                                       ",".join(dtypes), ", ".join(timings)))
    fig.tight_layout()
    fig.savefig(argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
