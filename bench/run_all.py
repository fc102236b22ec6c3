"""Run every bench script and print the ratios side by side (about 20 minutes on 2 cores).

    PYTHONPATH=tests:plugins .venv/bin/python bench/run_all.py \\
        [--seconds 20] [--parse-runs 5] [--parse-parses 12]

Each script runs in its own process (``parse_cost``, ``growth``, ``fleet``, ``fleet_waves``,
``orchestration``, ``noop``, ``airflow_failures``); their output streams through, and the last lines
are a Markdown table for ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from common import RESULT_PREFIX, machine

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> list[dict]:
    """Run one bench script, echo its output, return its results."""
    print(f"\n=== {script} {' '.join(args)}", flush=True)
    results = []
    with subprocess.Popen(
        [sys.executable, str(HERE / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(RESULT_PREFIX):
                results.append(json.loads(line[len(RESULT_PREFIX) :]))
            elif "[info" not in line and "[debug" not in line:
                print(line, end="", flush=True)
    return results


def table(results: dict[str, dict]) -> list[str]:
    """Markdown rows: measure, result, target, verdict."""
    rows = ["| measure | result | target | met |", "|---|---|---|---|"]
    if parse := results.get("parse"):
        rows.append(
            f"| DAG parse, fresh process, median of {parse['runs']} | dags/ {parse['dags']:.2f} s vs trivial "
            f"one-task DAG with the same imports {parse['trivial']:.2f} s: **{parse['ratio']:.2f}x** "
            f"(trivial with airflow.sdk only: {parse['trivial_sdk']:.2f} s) | <= 1.3x | "
            f"{'yes' if parse['ratio'] <= 1.3 else 'no'} |"
        )
    if steady := results.get("parse_steady"):
        for key, layout in (("plugins_folder", "plugins folder"), ("pythonpath", "PYTHONPATH only")):
            row = steady[key]
            rows.append(
                f"| DAG parse, steady state, real dag-processor every {steady['interval']} s, {layout}, "
                f"{'from bytecode' if steady.get('bytecode', True) else 'no bytecode'}, "
                f"median of {steady['parses']} | dags/ {row['dags']:.2f} s vs one-task KPO DAG "
                f"{row['kpo']:.2f} s: **{row['ratio']:.2f}x** (per-cycle {row['paired_ratio']:.2f}x) | "
                "<= 1.5x | "
                f"{'yes' if row['ratio'] <= 1.5 else 'no'} |"
            )
        if alone := steady.get("pythonpath_alone"):
            rows.append(
                f"| same, PYTHONPATH only, this DAG alone in its folder | {alone['dags']:.2f} s per parse | "
                "- | - |"
            )
    if over := results.get("overhead"):
        rows.append(
            f"| Orchestration overhead, {over['executor']}, every pod step {over['step_seconds']:g} s | "
            f"run {over['wall']:.1f} s vs critical path {over['critical_path']:.0f} s: "
            f"**{over['overhead']:+.1%}** | < 15% | "
            f"{'yes' if over['overhead'] < 0.15 and over['ok'] else 'no'} |"
        )
    if fan := results.get("fanout"):
        rows.append(
            f"| Fan-out, {fan['builds']} builds vs 1, pod steps {fan['step_seconds']:g} s | "
            f"{fan['many']:.1f} s vs {fan['one']:.1f} s: **{fan['ratio']:.2f}x** | < 1.3x | "
            f"{'yes' if fan['ratio'] < 1.3 and fan['ok'] else 'no'} |"
        )
    if noop := results.get("noop"):
        rows.append(
            f"| No-op scheduled (cron) run, nothing new | **{noop['pods']} pods**, "
            f"{noop['seconds']:.1f} s vs full run {noop['full_seconds']:.1f} s "
            f"({noop['full_pods']} pods): {noop['ratio']:.2f}x | 0 pods | "
            f"{'yes' if noop['pods'] == 0 and noop['state'] == 'success' else 'no'} |"
        )
    if kill := results.get("scheduler_kill"):
        rows.append(
            f"| Run after a scheduler kill -9 during the builds, {kill['builds']} builds, pod steps "
            f"{kill['step_seconds']:g} s (health check {kill['health_check_threshold']} s, orphan check "
            f"{kill['orphan_check_interval']} s) | {kill['disturbed']:.1f} s vs undisturbed "
            f"{kill['undisturbed']:.1f} s: **{kill['ratio']:.2f}x**, {kill['build_pods']} build pods | "
            f"success, no rebuild | {'yes' if kill['ok'] else 'no'} |"
        )
    if growth := results.get("growth"):
        cells = ", ".join(
            f"{r['images']}: {r['seconds'] * 1000:.1f} ms / {r['task_instances']} TIs" for r in growth["rows"]
        )
        ok = growth["under_a_second"] and growth["linearity"] < 1.5
        rows.append(
            f"| Growth, planning time / task instances per run | {cells}; per-image time spread "
            f"{growth['linearity']:.2f}x | linear, 1000 < 1 s | {'yes' if ok else 'no'} |"
        )
    if fleet := results.get("fleet"):
        rows.append(
            f"| Fleet planning, {fleet['clusters']} clusters x {fleet['releases']} releases, "
            f"{fleet['drivers']} driver | plan {fleet['seconds'] * 1000:.1f} ms; {fleet['builds']} builds "
            f"(vs {fleet['separate_builds']} in one run per cluster); {fleet['task_instances']} task "
            f"instances (vs {fleet['separate_task_instances']}), widest mapped step "
            f"{fleet['widest_mapped_step']} | each image built once, < max_map_length | "
            f"{'yes' if fleet['builds'] == fleet['releases'] * fleet['drivers'] else 'no'} |"
        )
    if waves := results.get("fleet_waves"):
        rows.append(
            f"| Fleet rollouts, a wave of {waves['clusters_in_wave']} clusters vs a wave of 1, same run "
            f"(pod steps {waves['pod_seconds']:g} s) | {waves['wave_wide_seconds']:.1f} s vs "
            f"{waves['wave_one_seconds']:.1f} s: **{waves['ratio']:.2f}x** (run {waves['state']}) | "
            f"in parallel (1.00x; one after the other: {waves['clusters_in_wave']}x) | "
            f"{'yes' if waves['state'] == 'success' and waves['ratio'] < 1.5 else 'no'} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run all, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", default="20", help="fixed pod step duration for the overhead runs")
    parser.add_argument("--parse-runs", default="5")
    parser.add_argument("--parse-parses", default="12", help="steady-state parses per file and layout")
    args = parser.parse_args(argv)
    started = time.monotonic()
    found: dict[str, dict] = {}
    for script, script_args in (
        ("parse_cost.py", ["--runs", args.parse_runs, "--parses", args.parse_parses]),
        ("growth.py", []),
        ("fleet.py", []),
        ("fleet_waves.py", []),
        ("orchestration.py", ["--seconds", args.seconds]),
        ("noop.py", []),
        ("airflow_failures.py", ["--seconds", args.seconds]),
    ):
        for result in run(script, *script_args):
            found[result["bench"]] = result
    print(f"\n{datetime.date.today().isoformat()}, {machine()}, {time.monotonic() - started:.0f} s in all\n")
    print("\n".join(table(found)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
