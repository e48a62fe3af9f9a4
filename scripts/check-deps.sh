#!/usr/bin/env bash
# Package-graph check: no cycle between Bazel packages and no edge against the layer order
#
#   (bottom)  common < kernels < model < ems < engine < coll < rpc, proto
#             < worker, coordinator < tools, eval, bench, tests, fuzz  (top)
#
# A package sits in the layer of its top folder (kernels/cuda is in kernels, tests/service in
# tests); //:WORKSPACE, config/ and third_party/ are below everything. Edges come from every
# rule's attributes in `bazel query --output=xml //...` (select() branches included):
#   - build edges (deps, srcs, hdrs, tools, ...) may only point to a lower layer, or within the
#     same top folder; packages of one layer may not depend on each other (worker and
#     coordinator are peers), except in the top layer (tools/eval/bench/tests/fuzz use each other);
#   - data edges (runtime files, e.g. the coordinator binary shipping the worker binary) may
#     point to the same layer, never upward;
#   - no cycle between packages (build and data edges together).
# Prints each offending package edge with the target edges behind it; exits 1 if any.
set -uo pipefail
cd "$(dirname "$0")/.."
xml=$(mktemp)
trap 'rm -f "$xml"' EXIT
if ! bazel query --output=xml '//...' >"$xml" 2>"$xml.err"; then
  cat "$xml.err" >&2
  rm -f "$xml.err"
  exit 2
fi
rm -f "$xml.err"
python3 - "$xml" <<'EOF'
import collections
import sys
import xml.etree.ElementTree as ET

LAYERS = [
    ["", "config", "third_party"],
    ["common"],
    ["kernels"],
    ["model"],
    ["ems"],
    ["engine"],
    ["coll"],
    ["rpc", "proto"],
    ["worker", "coordinator"],
    ["tools", "eval", "bench", "tests", "fuzz"],
]
RANK = {top: i for i, layer in enumerate(LAYERS) for top in layer}
TOP_LAYER = len(LAYERS) - 1
NOT_EDGES = {"visibility", "outs", "tags", "licenses", "distribs", "compatible_with",
             "restricted_to", "exec_compatible_with"}
RUNTIME = {"data"}


def package(label):
    return label[2:].split(":")[0] if label.startswith("//") else None


def top(pkg):
    return pkg.split("/")[0]


edges = collections.defaultdict(set)  # (pkg a, pkg b, kind) -> {(target a, target b)}
for rule in ET.parse(sys.argv[1]).getroot().iter("rule"):
    src = rule.get("name")
    pa = package(src)
    for attr in rule:
        name = attr.get("name")
        if attr.tag not in ("list", "label") or name in NOT_EDGES:
            continue
        values = [attr.get("value")] if attr.tag == "label" else [
            v.get("value") for v in attr if v.tag == "label"]
        for dst in values:
            pb = package(dst or "")
            if pb is None or pb == pa:
                continue
            edges[(pa, pb, "data" if name in RUNTIME else "build")].add((src, dst))

bad = []
unknown = sorted({top(p) for (a, b, _) in edges for p in (a, b) if top(p) not in RANK})
for t in unknown:
    bad.append(f"package folder '{t}/' is in no layer: add it to LAYERS in {sys.argv[0]}")
for (a, b, kind), targets in sorted(edges.items()):
    ta, tb = top(a), top(b)
    if ta == tb or ta not in RANK or tb not in RANK:
        continue
    ra, rb = RANK[ta], RANK[tb]
    why = None
    if rb > ra:
        why = f"upward {kind} edge ({ta} is below {tb})"
    elif rb == ra and kind == "build" and ra != TOP_LAYER:
        why = f"build edge between peers ({ta} and {tb} share a layer)"
    if why:
        ex = sorted(targets)
        more = f" (+{len(ex) - 3} more)" if len(ex) > 3 else ""
        bad.append(f"{a} -> {b}: {why}; " + ", ".join(f"{s} -> {d}" for s, d in ex[:3]) + more)

# Cycles: strongly connected components of the package graph (Tarjan).
graph = collections.defaultdict(set)
for (a, b, _) in edges:
    graph[a].add(b)
index, low, stack, on, sccs = {}, {}, [], set(), []


def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in sorted(graph[v]):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))


sys.setrecursionlimit(10000)
for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
    if v not in index:
        visit(v)
for comp in sccs:
    inner = sorted((a, b, k) for (a, b, k) in edges if a in comp and b in comp)
    bad.append("cycle between packages " + ", ".join(comp) + ": " + "; ".join(
        f"{a} -> {b} ({k}: {sorted(edges[(a, b, k)])[0][0]} -> {sorted(edges[(a, b, k)])[0][1]})"
        for a, b, k in inner))

n_pkg = len({p for (a, b, _) in edges for p in (a, b)})
for line in bad:
    print("check-deps: " + line)
print(f"check-deps: {n_pkg} packages, {len(edges)} package edges, {len(bad)} problem(s)")
sys.exit(1 if bad else 0)
EOF
