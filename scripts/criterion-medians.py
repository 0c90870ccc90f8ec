#!/usr/bin/env python3
"""Print the median of every criterion benchmark under target/criterion as a Markdown table.

Criterion's console line shows a mean estimate; BENCHMARKS.md records medians, which this reads
from each benchmark's `new/estimates.json`.

Usage: scripts/criterion-medians.py [GROUP ...]
"""
import json
import pathlib
import sys


def fmt(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.1f} ns"


root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
groups = set(sys.argv[1:])
print("| benchmark | median | mean, 95% CI |")
print("| --- | ---: | --- |")
for est in sorted(root.glob("**/new/estimates.json")):
    bench = est.parent.parent.relative_to(root).as_posix()
    if groups and bench.split("/")[0] not in groups:
        continue
    data = json.loads(est.read_text())
    med = data["median"]["point_estimate"]
    lo = data["mean"]["confidence_interval"]["lower_bound"]
    hi = data["mean"]["confidence_interval"]["upper_bound"]
    print(f"| {bench} | {fmt(med)} | {fmt(lo)} - {fmt(hi)} |")
