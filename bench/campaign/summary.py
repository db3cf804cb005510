"""What a campaign says about itself: one stdout line per stage, and the markdown summary `--collect` prints."""

from __future__ import annotations

import json
from collections.abc import Callable


def _rows(result: dict) -> str:
    rows = result.get("rows", [])
    if not rows:
        return "no rows"
    fastest = min(rows, key=lambda r: r["latency_ms"]["median"])
    agreement = result.get("cpu_agreement") or {}
    agree = ""
    if agreement.get("cells"):
        ok = sum(c["agree"] for c in agreement["cells"])
        agree = f"; CPU agreement {ok}/{len(agreement['cells'])} cells"
    return (
        f"{len(rows)} rows; fastest {_name(fastest)} {fastest['latency_ms']['median']:.1f} ms "
        f"({_accuracy(fastest)}){agree}"
    )


def _name(row: dict) -> str:
    return f"{row['sampler']}-{row['steps']} {row['backend']} {row.get('dtype', '')}".strip()


def _accuracy(row: dict) -> str:
    return " / ".join(f"{v['mean']:.3f}" for v in row["accuracy"].values())


def _preflight(r: dict) -> str:
    where = r.get("gpu") or f"no CUDA, {r.get('cpu_count')} CPUs"
    return f"{where}; torch {r.get('torch')} CUDA {r.get('torch_cuda')} cuDNN {r.get('cudnn')}"


def _speed(r: dict) -> str:
    rows = {(x["system"].split(",")[0], x["sampler"]): x["ms_per_split"]["median"] for x in r.get("rows", [])}
    parts = [f"{system} {sampler} {ms:.0f} ms" for (system, sampler), ms in rows.items() if "ddpm" in sampler]
    big = r.get("throughput", {})
    return "; ".join(parts + [f"{big.get('images_per_second', 0):.0f} img/s at {big.get('images')} images"])


def _tests(r: dict) -> str:
    return r.get("summary_line", "")


def _render(r: dict) -> str:
    return f"{r.get('scenes')} scenes, {r.get('images_per_second')} images/s on {r.get('device')}"


def _train(r: dict) -> str:
    evals = r.get("quick_evals") or [{}]
    last = {k: round(v, 3) for k, v in evals[-1].items() if k.startswith("acc_")}
    rates = f"{r.get('images_per_second_median')} img/s steady, {r.get('images_per_second')} overall"
    return f"{r.get('steps')} steps, {rates}, last quick eval {last}"


def _export(r: dict) -> str:
    parts = []
    for precision, record in r.get("exports", {}).items():
        worst = max((p["relative"] for p in record.get("parity", [])), default=None)
        other = "skipped (see its JSON)" if "skipped" in record else record.get("error", "")[:60]
        parts.append(f"{precision} " + (f"parity rel {worst:.1e}" if worst is not None else other))
    return "; ".join(parts)


LINES: dict[str, Callable[[dict], str]] = {
    "preflight": _preflight,
    "default_bench": _rows,
    "sampling_speed": _speed,
    "gpu_tests": _tests,
    "render": _render,
    "train": _train,
    "new_model_bench": _rows,
    "export": _export,
}


def stage_line(entry: dict) -> str:
    """`a. preflight  ok  3.1 s  NVIDIA H200; torch ...`: status first, then what the result says, if it says."""
    name = entry["stage"].split(". ", 1)[1]
    try:
        detail = LINES[name](entry["result"]) if entry["result"] else ""
    except (KeyError, TypeError, ValueError, IndexError) as err:
        detail = f"(no summary: {type(err).__name__})"
    return f"{entry['stage']:<20} {entry['status'][:120]:<24} {entry['seconds']:6.1f} s  {detail}"[:400]


# The GPU goals of issue 22, answered from one campaign's numbers (ms for one 32-image split).
def cpu_default_accuracy() -> str:
    """The shipped default's DPM-Solver++-10 on the course files, read from the CPU bench the campaign checks its
    GPU rows against (so the two cannot name different numbers)."""
    from campaign.rows import CPU_REFERENCE

    rows = json.loads(CPU_REFERENCE.read_text())["rows"]
    row = next(r for r in rows if (r["backend"], r["sampler"], r["steps"]) == ("torch", "dpmpp", 10))
    return f"{_accuracy(row)} (DPM-Solver++-10, CPU, docs/results.md)"


def markdown(record: dict) -> str:
    stages = {e["stage"].split(". ", 1)[1]: e for e in record["stages"]}
    pre = stages.get("preflight", {}).get("result", {})
    lines = [
        f"## GPU campaign {record['started_utc']} ({pre.get('gpu', 'no GPU')}, torch {pre.get('torch')}, "
        f"CUDA {pre.get('torch_cuda')}){' (dry run)' if record['dry_run'] else ''}",
        "",
        f"Command: `{record['command']}`; {record.get('elapsed_s')} s of a {record['budget_s']:.0f} s budget.",
        "",
        "| stage | status | s | what it says |",
        "|---|---|---|---|",
    ]
    lines += [f"| {e['stage']} | {e['status'][:80]} | {e['seconds']} | {stage_line(e).split(' s  ', 1)[-1]} |"
              for e in record["stages"]]  # fmt: skip
    for name, title in (
        ("default_bench", "The shipped default"),
        ("new_model_bench", "The GPU-trained model"),
    ):
        rows = stages.get(name, {}).get("result", {}).get("rows", [])
        if rows:
            lines += ["", f"### {title}", "", "| row | median ms | p90 ms | accuracy (test / new_test) |",
                      "|---|---|---|---|"]  # fmt: skip
            lines += [f"| {_name(r)} | {r['latency_ms']['median']:.1f} | {r['latency_ms']['p90']:.1f} | "
                      f"{_accuracy(r)} |" for r in rows]  # fmt: skip
    lines += ["", "### Goals", "", "| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {goal} | {value} | {met} |" for goal, value, met in goals(stages)]
    return "\n".join(lines) + "\n"


def _mean(row: dict) -> float:
    return sum(v["mean"] for v in row["accuracy"].values()) / len(row["accuracy"])


def _best(rows: list[dict], sampler: str, steps: int) -> dict | None:
    matching = [r for r in rows if (r["sampler"], r["steps"]) == (sampler, steps)]
    return min(matching, key=lambda r: r["latency_ms"]["median"]) if matching else None


def _goal(goal: str, row: dict | None, limit_ms: float) -> tuple[str, str, str]:
    if row is None:
        return goal, "not measured", "-"
    ms = row["latency_ms"]["median"]
    return goal, f"{ms:.1f} ms ({_name(row)})", "yes" if ms <= limit_ms else "no"


def goals(stages: dict) -> list[tuple[str, str, str]]:
    rows = stages.get("default_bench", {}).get("result", {}).get("rows", [])
    ddpm = _best(rows, "ddpm", 1000)
    out = [_goal("DDPM-1000 <= 1.0 s", ddpm, 1000), _goal("DDIM-50 <= 60 ms", _best(rows, "ddim", 50), 60)]
    close = [r for r in rows if ddpm and r is not ddpm and _mean(r) >= _mean(ddpm) - 0.01]
    fastest = min(close, key=lambda r: r["latency_ms"]["median"]) if close else None
    out.append(_goal("fastest row within 1 point of DDPM-1000 <= 25 ms", fastest, 25))
    speed = stages.get("sampling_speed", {}).get("result", {}).get("rows", [])
    times = {(x["system"].startswith("course"), x["sampler"]): x["ms_per_split"]["median"] for x in speed}
    for sampler in ("ddpm-1000", "ddim-50"):
        if (True, sampler) in times and (False, sampler) in times:
            ratio = times[(True, sampler)] / times[(False, sampler)]
            value = f"{times[(True, sampler)]:.0f} ms vs {times[(False, sampler)]:.1f} ms: {ratio:.0f}x"
            out.append((f"course-style baseline / ours, {sampler}", value, "-"))
    trained = stages.get("train", {}).get("result", {})
    rate = trained.get("images_per_second_median") or trained.get("images_per_second")
    met = "-" if rate is None else ("yes" if rate >= 5000 else "no")
    out.append(("training >= 5,000 images/s (gpu preset)", f"{rate} images/s", met))
    new = stages.get("new_model_bench", {}).get("result", {}).get("rows", [])
    best = max(new, key=_mean) if new else None
    value = f"{_accuracy(best)} ({_name(best)})" if best else "not measured"
    out.append((f"GPU-trained model vs the CPU default's {cpu_default_accuracy()}", value, "-"))
    return out
