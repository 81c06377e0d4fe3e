#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Plots the loss curve attn-train-example prints.

    attn-train-example | python3 examples/plot_train.py [--out train.png]
    python3 examples/plot_train.py run.txt [more.txt ...] [--out train.png]

Reads the lines "step N loss L acc A" of one or more runs (a file each, or
standard input).  With matplotlib, draws loss (log scale) and accuracy
against the step into --out (default train.png); without it, or with
--text, prints the loss curve as text.
"""
import argparse
import math
import sys


def read_run(f):
    steps, loss, acc = [], [], []
    for line in f:
        w = line.split()
        if len(w) == 6 and w[0] == "step" and w[2] == "loss" and w[4] == "acc":
            steps.append(int(w[1]))
            loss.append(float(w[3]))
            acc.append(float(w[5]))
        elif line.startswith("#"):
            print(line.rstrip())
    return steps, loss, acc


def text_plot(name, steps, loss, width=60):
    print(name)
    floor = 1e-4
    top = max(max(loss), floor * 10)
    span = math.log10(top) - math.log10(floor)
    for s, l in zip(steps, loss):
        n = int(width * (math.log10(max(l, floor)) - math.log10(floor)) / span)
        print("%6d %9.4f %s" % (s, l, "#" * max(n, 0)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="files of printed runs (default: stdin)")
    ap.add_argument("--out", default="train.png", help="image to write")
    ap.add_argument("--text", action="store_true", help="text only")
    a = ap.parse_args()
    runs = []
    if a.runs:
        for path in a.runs:
            with open(path) as f:
                runs.append((path, read_run(f)))
    else:
        runs.append(("stdin", read_run(sys.stdin)))
    runs = [r for r in runs if r[1][0]]
    if not runs:
        sys.exit("plot_train: no 'step N loss L acc A' lines")
    plt = None
    if not a.text:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("plot_train: matplotlib is not installed; text follows")
    if plt is None:
        for name, (steps, loss, _) in runs:
            text_plot(name, steps, loss)
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, (steps, loss, acc) in runs:
        ax1.plot(steps, loss, label=name)
        ax2.plot(steps, acc, label=name)
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy (training batch)")
    ax2.set_xlabel("step")
    ax2.set_ylabel("accuracy (training batch)")
    ax2.set_ylim(0, 1.02)
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("attn-train-example: reversing sequences")
    fig.tight_layout()
    fig.savefig(a.out, dpi=100)
    print("plot_train: wrote", a.out)


if __name__ == "__main__":
    main()
