#!/usr/bin/env python3
"""Every goal the README states, with the figure measured for it, from the JSON files of one
`Benchmarks/run --json-dir DIR` (as `Benchmarks/run --check` writes them).

    Benchmarks/goals.py DIR              # a table: goal, figure (median, min-max, runs), met or MISSED
    Benchmarks/goals.py DIR --markdown   # the same as a Markdown table, for the README
    Benchmarks/goals.py DIR --check      # exit 3 when a goal is missed, 4 when a goal has no figure

Each figure is the median over repeats, with the smallest and largest run: for ratios against a
peer (storescp, Orthanc, curl) the median of the per-repeat ratios, each of which compares two runs
made back to back in the same repeat. ledger-bench and consent-bench run once per repeat
(ledger-1.json, ledger-2.json, ...). The header names the commit measured (DIR/context.json,
written by Benchmarks/run), the date and the machine.
"""

import argparse
import glob
import json
import os
import statistics
import sys


class Goal:
    def __init__(self, benchmark, name, unit, target, higher_is_better, values):
        self.benchmark, self.name, self.unit, self.target = benchmark, name, unit, target
        self.higher_is_better, self.values = higher_is_better, [v for v in values if v is not None]

    @property
    def median(self):
        return statistics.median(self.values) if self.values else None

    @property
    def met(self):
        if self.median is None:
            return None
        return self.median >= self.target if self.higher_is_better else self.median < self.target

    def goal_text(self):
        return "%s %s" % ("≥" if self.higher_is_better else "<", fmt(self.target, self.unit))

    def figure_text(self):
        if not self.values:
            return "not measured"
        text = fmt(self.median, self.unit)
        if len(self.values) > 1:
            text += " (%s–%s, %d runs)" % (fmt(min(self.values), self.unit, bare=True),
                                            fmt(max(self.values), self.unit, bare=True), len(self.values))
        return text

    def verdict(self):
        return {None: "NO FIGURE", True: "met", False: "MISSED"}[self.met]


def fmt(v, unit, bare=False):
    if unit == "x":
        s = "%.2f" % v
        return s if bare else s + " ×"
    if unit == "/s":
        s = "{:,.0f}".format(v)
        return s if bare else s + " /s"
    s = "%.0f" % v if v >= 100 else "%.1f" % v
    return s if bare else "%s %s" % (s, unit)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def ingest_goals(doc):
    out = []
    for g in doc.get("goals", []):
        a = g["associations"]
        label = "%d association%s" % (a, "" if a == 1 else "s")
        # Per-repeat ratios are in the runs: recompute them so that min and max are exact.
        for ref, key, target in (("storescp", "vsStorescp", 0.9), ("orthanc", "vsOrthanc", 3.0)):
            if key not in g:
                continue
            ratios = []
            for r in doc.get("runs", []):
                if r["server"] != "bridge" or r["associations"] != a:
                    continue
                base = [b for b in doc["runs"] if b["server"] == ref and b["associations"] == a and b["run"] == r["run"]]
                if base:
                    ratios.append(r["instancesPerSecond"] / base[0]["instancesPerSecond"])
            out.append(Goal("ingest", "instances/s vs %s, %s" % ("storescp" if ref == "storescp" else "Orthanc", label),
                            "x", target, True, ratios or [g[key]]))
    return out


def exchange_goals(doc):
    runs = doc.get("runs", [])
    g = doc.get("goals", {})
    n = g.get("instances")
    ratios = [r["ratio"] for r in runs if r["kind"] == "fetch" and r["instances"] == n]
    out = [Goal("exchange", "fetch MB/s vs curl, %s instances" % n, "x", 0.8, True, ratios or [g.get("vsCurl")])]
    if "rssGrowth" in g:
        out.append(Goal("exchange", "fetch peak RSS, %d vs %d instances" % (n, g["smallInstances"]), "x", 1.25, False,
                        [g["rssGrowth"]]))
    return out


def ledger_goals(docs):
    return [
        Goal("ledger", "appends/s at %s entries, synchronous=FULL" % ", ".join(sorted({"{:,}".format(d["appends"]["entries"]) for d in docs if "appends" in d})),
             "/s", 200_000, True, [d.get("appends", {}).get("appendsPerSecond") for d in docs]),
        Goal("ledger", "inclusion proof, generate, p50", "µs", 100, False,
             [d.get("inclusionGenerate", {}).get("p50Micros") for d in docs]),
        Goal("ledger", "consistency proof, generate, p50", "µs", 100, False,
             [d.get("consistencyGenerate", {}).get("p50Micros") for d in docs]),
        Goal("ledger", "inclusion proof, verify, p50", "µs", 50, False,
             [d.get("inclusionVerify", {}).get("p50Micros") for d in docs]),
        Goal("ledger", "consistency proof, verify, p50", "µs", 50, False,
             [d.get("consistencyVerify", {}).get("p50Micros") for d in docs]),
    ]


def consent_goals(docs):
    return [Goal("consent", "latency the consent check adds, p95", "µs", 1000, False,
                 [d.get("addedP95Micros") for d in docs])]


def collect(folder):
    goals = []
    if os.path.exists(os.path.join(folder, "ingest.json")):
        goals += ingest_goals(load(os.path.join(folder, "ingest.json")))
    if os.path.exists(os.path.join(folder, "exchange.json")):
        goals += exchange_goals(load(os.path.join(folder, "exchange.json")))
    ledgers = [load(p) for p in sorted(glob.glob(os.path.join(folder, "ledger*.json")))]
    if ledgers:
        goals += ledger_goals(ledgers)
    consents = [load(p) for p in sorted(glob.glob(os.path.join(folder, "consent*.json")))]
    if consents:
        goals += consent_goals(consents)
    return goals


def header(folder):
    path = os.path.join(folder, "context.json")
    if not os.path.exists(path):
        return "(no context.json: commit and machine unknown)"
    c = load(path)
    return "commit %s%s, %s, %s, %d cores, %d GiB; median of %s interleaved repeat%s" % (
        c.get("commit", "?")[:10], " (with uncommitted changes to the sources)" if c.get("sourcesModified") else "",
        c.get("date", "?"), c.get("machine", "?"), c.get("cores", 0), c.get("memoryGiB", 0), c.get("repeat", "?"),
        "" if str(c.get("repeat")) == "1" else "s")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", help="the --json-dir of a Benchmarks/run")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--check", action="store_true", help="exit 3 when a goal is missed, 4 when one has no figure")
    a = p.parse_args(argv)
    goals = collect(a.dir)
    if not goals:
        print("goals: no benchmark results in %s" % a.dir, file=sys.stderr)
        return 4 if a.check else 0
    print(header(a.dir))
    if a.markdown:
        print()
        print("| benchmark | goal | measured | |")
        print("|---|---|---|---|")
        for g in goals:
            print("| %s: %s | %s | %s | %s |" % (g.benchmark, g.name, g.goal_text(), g.figure_text(),
                                                 "**MISSED**" if g.met is False else g.verdict()))
    else:
        w = max(len(g.benchmark + ": " + g.name) for g in goals)
        for g in goals:
            print("%-*s  goal %-12s  %-38s  %s" % (w, g.benchmark + ": " + g.name, g.goal_text(), g.figure_text(),
                                                   g.verdict()))
    missed = [g for g in goals if g.met is False]
    absent = [g for g in goals if g.met is None]
    print("%d goals: %d met, %d missed%s" % (len(goals), len(goals) - len(missed) - len(absent), len(missed),
                                             ", %d without a figure" % len(absent) if absent else ""))
    if a.check:
        if missed:
            return 3
        if absent:
            return 4
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
