#!/usr/bin/env python3
"""Per-decode-step kernel time from profile_decode.sh's ncu CSV: groups kernels by short name,
normalises by the number of forward passes in the window (launches of the per-forward kernel
named by --per-step, default the embedding gather) and prints us per step, largest first."""
import argparse, collections, csv, io, re, sys

def short(name):
    name = re.sub(r"\(.*", "", name)          # drop argument lists
    name = re.sub(r"<.*", "", name)           # drop template arguments
    return name.split("::")[-1].strip()

ap = argparse.ArgumentParser()
ap.add_argument("csv")
ap.add_argument("--per-step", default="embedding")
a = ap.parse_args()
text = open(a.csv, errors="replace").read()
text = text[text.find('"ID"'):]
rows = list(csv.DictReader(io.StringIO(text)))
def ns(r):  # "11,872" (ncu's thousands separators) -> 11872.0; None for the units row
    v = r.get("gpu__time_duration.sum", "").replace(",", "")
    return float(v) if v.replace(".", "").isdigit() else None
rows = [r for r in rows if ns(r) is not None]
tot = collections.defaultdict(float); cnt = collections.Counter(); full = {}
for r in rows:
    k = short(r["Kernel Name"]); t = ns(r) / 1e3
    tot[k] += t; cnt[k] += 1; full.setdefault(k, r["Kernel Name"][:160])
steps = max(1, sum(c for k, c in cnt.items() if a.per_step in k.lower()))
print(f"{len(rows)} kernels, {steps} forward passes ({a.per_step}); us per step:")
all_t = 0
for k, t in sorted(tot.items(), key=lambda kv: -kv[1]):
    all_t += t / steps
    print(f"{t / steps:9.1f} us  {cnt[k] / steps:6.1f} launches  {t / cnt[k]:7.2f} us each  {full[k]}")
print(f"{all_t:9.1f} us total per step (kernels alone, no launch gaps)")
