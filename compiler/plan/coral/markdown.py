"""report.md of a serving plan: the same facts as plan.json and report.json, for people."""

from __future__ import annotations


def report_markdown(plan: dict, report: dict) -> str:
    lines = [f"# mlc plan serve ({plan['mode']} mode)", "",
             f"**${report['cost_per_hour']:.2f}/hour**, goodput {report['goodput']:.1%}; "
             f"solved in {report['solve_seconds']:.2f} s (stage 1 "
             f"{report['stage1_seconds']:.2f} s"
             + (f", reused for {', '.join(report['stage1_reused'])}"
                if report["stage1_reused"] else "")
             + f"; stage 2 {report['stage2_seconds']:.3f} s). Capacity is planned so demand is "
             f"at most {plan['target_utilization']:.0%} of it.", ""]
    lines += [f"> {note}" for note in plan["notes"]] + ([""] if plan["notes"] else [])
    lines += ["| plan | $/hour | goodput | cost vs Coral |", "|---|---|---|---|",
              f"| Coral | {report['cost_per_hour']:.2f} | {report['goodput']:.1%} | 1.00× |"]
    for name, base in report["baselines"].items():
        ratio = report["baseline_cost_ratio"].get(name)
        lines.append(f"| {name} | {base['cost_per_hour']:.2f} | {base['goodput']:.1%} | "
                     + (f"{ratio:.2f}× |" if ratio else "- |"))
    lines += ["", "## Replicas", "",
              "| model | replicas | configuration | req/s each | batch | ms/token | $/hour each |",
              "|---|---|---|---|---|---|---|"]
    for name, entry in plan["models"].items():
        for r in entry["replicas"]:
            lines.append(f"| {name} | {r['count']} | `{r['config']}` | "
                         f"{r['throughput_requests_per_s']:.2f} | {r['batch']} | "
                         f"{r['tpot_ms']:.0f} | {r['cost_per_hour']:.2f} |")
    if report["simulation"]:
        lines += ["", "## Simulation (Poisson arrivals)", "",
                  "| model | demand req/s | served req/s | utilization | p99 wait s |",
                  "|---|---|---|---|---|"]
        for name, s in report["simulation"].items():
            lines.append(f"| {name} | {s['demand']:.2f} | {s['served_rate']:.2f} | "
                         f"{s['utilization']:.0%} | {s['p99_wait_s']:.2f} |")
    lines += ["", "## Launch commands (vLLM)", ""]
    for name, entry in plan["models"].items():
        for r in entry["replicas"]:
            lines.append(f"- {name} ×{r['count']}: `{r['launch']}`")
    return "\n".join(lines) + "\n"
