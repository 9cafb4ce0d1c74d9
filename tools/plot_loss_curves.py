#!/usr/bin/env python3
"""Overlays the training-loss curves of several engine-train runs (their metrics.jsonl) in one SVG and
prints each run's final loss and evaluation metric. Runs whose labels share everything but the last
word (e.g. "PP-LiteSeg-T fp32", "PP-LiteSeg-T bf16") share a panel.

    python3 tools/plot_loss_curves.py [--svg docs/precision_curves.svg] "LABEL=run/metrics.jsonl" ...

Without --svg only the table is printed.

Standard library only (the SVG is written by hand)."""
import argparse
import json
import math
import sys

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def read_run(path):
    train, evals = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "train" and "loss" in r:
                train.append((r["iter"], r["loss"]))
            elif r.get("type") == "eval":
                metric = "miou" if "miou" in r else "bbox_map"
                evals.append((r.get("iter", r.get("epoch")), metric, r[metric]))
    if not train:
        sys.exit(f"{path}: no training records")
    return train, evals


def panel_svg(x0, y0, w, h, title, runs):
    xs = [i for _, tr, _ in runs for i, _ in tr]
    ys = [v for _, tr, _ in runs for _, v in tr]
    xmax = max(xs)
    # A log axis when the loss falls by more than 20x (detection losses start in the hundreds).
    log = min(ys) > 0 and max(ys) / min(ys) > 20
    f = math.log10 if log else (lambda v: v)
    lo, hi = (f(min(ys)), f(max(ys))) if log else (0.0, max(ys) * 1.05)
    scale = lambda v: y0 + h - h * (f(v) - lo) / (hi - lo)
    out = [f'<text x="{x0 + w / 2}" y="{y0 - 8}" text-anchor="middle" font-size="14">{title}</text>',
           f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#444"/>']
    for k in range(5):
        t = lo + (hi - lo) * k / 4
        yv = 10 ** t if log else t
        yy = y0 + h - h * k / 4
        out.append(f'<text x="{x0 - 6}" y="{yy + 4}" text-anchor="end" font-size="10">{yv:.3g}</text>')
        xx = x0 + w * k / 4
        out.append(f'<text x="{xx}" y="{y0 + h + 14}" text-anchor="middle" font-size="10">{xmax * k / 4:.0f}</text>')
    axis = "iteration" + (" (loss on a log scale)" if log else "")
    out.append(f'<text x="{x0 + w / 2}" y="{y0 + h + 30}" text-anchor="middle" font-size="11">{axis}</text>')
    for n, (label, tr, _) in enumerate(runs):
        pts = " ".join(f"{x0 + w * i / xmax:.1f},{scale(v):.1f}" for i, v in tr)
        color = COLORS[n % len(COLORS)]
        dash = ' stroke-dasharray="5,3"' if n % 2 else ""
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"{dash}/>')
        out.append(f'<text x="{x0 + w - 8}" y="{y0 + 18 + 16 * n}" text-anchor="end" font-size="11" '
                   f'fill="{color}">{label.split()[-1]} (train loss)</text>')
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--svg")
    ap.add_argument("runs", nargs="+", help="LABEL=path/metrics.jsonl")
    a = ap.parse_args()
    panels = {}
    print(f"{'run':32} {'final loss':>10} {'last eval':>20} {'best eval':>10}")
    for spec in a.runs:
        label, _, path = spec.partition("=")
        tr, ev = read_run(path)
        panels.setdefault(" ".join(label.split()[:-1]), []).append((label, tr, ev))
        tail = [v for _, v in tr[-3:]]
        last = f"{ev[-1][1]} {ev[-1][2]:.4f}" if ev else "-"
        best = f"{max(v for _, _, v in ev):.4f}" if ev else "-"
        print(f"{label:32} {sum(tail) / len(tail):10.4f} {last:>20} {best:>10}")
    if not a.svg:
        return
    w, h, pad = 420, 260, 70
    width = pad + len(panels) * (w + pad)
    body = []
    for k, (title, runs) in enumerate(panels.items()):
        body += panel_svg(pad + k * (w + pad), 40, w, h, title, runs)
    with open(a.svg, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 90}" '
                f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n')
        f.write("\n".join(body) + "\n</svg>\n")


if __name__ == "__main__":
    main()
