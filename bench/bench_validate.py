"""Benchmark: validating workflow definitions of 500 to 4,000 nodes (edges = 1.5 x nodes).

    .venv/bin/python bench/bench_validate.py [--repeat N]

Each node is a real node type with a config and most carry a template naming
an upstream node, so every rule runs (config schemas, templates, upstream
check, cycle detection). Prints a table, then one JSON object with the
figures as the last line. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zyra.settings")

import django

django.setup()

from workflows.definition import normalize  # noqa: E402
from workflows.validation import validate_definition  # noqa: E402

SIZES = (500, 1000, 2000, 4000)


def make_definition(n: int, seed: int = 7) -> dict[str, Any]:
    """A DAG: a chain (n-1 edges) plus n/2 + 1 forward edges to later nodes."""
    rng = random.Random(seed)
    nodes: list[dict[str, Any]] = [{"id": "n0", "type": "MANUAL", "position": {"x": 0, "y": 0}, "data": {"label": "start", "config": {}}}]
    for i in range(1, n):
        prev = f"n{i - 1}"
        kind = i % 4
        node: dict[str, Any]
        if kind == 0:
            node = {
                "type": "HTTP_REQUEST",
                "data": {
                    "config": {"url": f"https://api.example.com/items/{{{{ nodes.{prev}.output.id }}}}?page={i}", "method": "GET"},
                    "retry": {"max_attempts": 3, "backoff_s": 1},
                    "timeout_s": 30,
                },
            }
        elif kind == 1:
            node = {
                "type": "custom",
                "data": {
                    "blockType": "CALCULATOR",
                    "config": {"expression": "a * 2 + 1", "variables": {"a": f"{{{{ nodes.{prev}.output.result }}}}"}},
                },
            }
        elif kind == 2:
            node = {
                "type": "EMAIL",
                "data": {"config": {"to": "ops@example.com", "subject": f"step {i}", "body": f"value {{{{ nodes.{prev}.output }}}}"}},
            }
        else:
            node = {"type": "DELAY", "data": {"config": {"seconds": 1}}}
        node["id"] = f"n{i}"
        node["position"] = {"x": i * 10, "y": 0}
        node["data"]["label"] = f"node {i}"
        nodes.append(node)
    edges = [{"id": f"c{i}", "source": f"n{i}", "target": f"n{i + 1}"} for i in range(n - 1)]
    extra = n + n // 2 - len(edges)
    for j in range(extra):
        a = rng.randrange(0, n - 2)
        b = rng.randrange(a + 2, n)
        edges.append({"id": f"x{j}", "source": f"n{a}", "target": f"n{b}"})
    return {"nodes": nodes, "edges": edges, "settings": {"timeout_s": 3600}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per size (median reported)")
    args, _ = parser.parse_known_args()  # bench/run.sh passes the same arguments to every benchmark
    results: list[dict[str, Any]] = []
    validate_definition(make_definition(50))  # warm the per-type schema validators
    print(
        f"{'nodes':>6} {'edges':>6} {'errors':>6} {'first_ms':>9} {'median_ms':>10} {'min_ms':>8} {'cpu_ms':>7} {'us/node':>8} {'normalize_ms':>13}"
    )
    for n in SIZES:
        definition = make_definition(n)
        t0 = time.perf_counter()
        errors = validate_definition(definition, max_nodes=max(SIZES))
        first = time.perf_counter() - t0
        runs = []
        cpu = []
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            validate_definition(definition, max_nodes=max(SIZES))
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        t0 = time.perf_counter()
        normalize(definition)
        norm = time.perf_counter() - t0
        median = statistics.median(runs)
        row = {
            "nodes": n,
            "edges": len(definition["edges"]),
            "errors": len(errors),
            "first_ms": round(first * 1000, 1),
            "median_ms": round(median * 1000, 1),
            "min_ms": round(min(runs) * 1000, 1),
            "cpu_median_ms": round(statistics.median(cpu) * 1000, 1),
            "us_per_node": round(median * 1e6 / n, 1),
            "normalize_ms": round(norm * 1000, 1),
        }
        results.append(row)
        print(
            f"{n:>6} {row['edges']:>6} {row['errors']:>6} {row['first_ms']:>9} {row['median_ms']:>10} {row['min_ms']:>8} {row['cpu_median_ms']:>7} {row['us_per_node']:>8} {row['normalize_ms']:>13}"
        )
    base = results[0]
    growth = {str(r["nodes"]): round(r["min_ms"] / base["min_ms"], 2) for r in results}
    print(
        f"time relative to {base['nodes']} nodes: "
        + ", ".join(f"{k}: {v}x" for k, v in growth.items())
        + f" (node ratio {SIZES[-1] // SIZES[0]}x at the end)"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    # Wall time on a shared box swings with its load; cpu_median_ms (process time) less so.
    print(
        json.dumps(
            {
                "benchmark": "validate_definition",
                "repeat": args.repeat,
                "load_avg_1m": load,
                "results": results,
                "growth_vs_smallest": growth,
            }
        )
    )


if __name__ == "__main__":
    main()
