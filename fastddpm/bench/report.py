"""The bench's outputs: a rich table on screen, and under bench/results/: <stamp>.json (config, environment,
rows), <stamp>.md (the same table in markdown), <stamp>.png (accuracy vs latency) and <stamp>/ sample grids."""

from __future__ import annotations

import json
from pathlib import Path

from fastddpm import atomic
from fastddpm.configs import format_interval

COLUMNS = (
    "backend",
    "sampler",
    "steps",
    "median ms",
    "p90 ms",
    "img/s",
    "peak MiB",
    "GFLOP/img-call",
    "GFLOP/s",
    "of sgemm",
)


def _cells(row: dict, splits: list[str]) -> list[str]:
    lat = row["latency_ms"]
    mem = f"{row['peak_memory_mib']:.0f}" if row["peak_memory_mib"] is not None else "-"
    cells = [
        row["backend"],
        row["sampler"],
        str(row["steps"]),
        f"{lat['median']:.1f}",
        f"{lat['p90']:.1f}",
        f"{row['images_per_second']:.1f}",
        mem,
        f"{row['gflop_per_image_call']:.3f}",
        f"{row['achieved_gflops']:.1f}",
        f"{row['sgemm_fraction']:.0%}" if row["sgemm_fraction"] is not None else "-",
    ]
    for split in splits:
        acc = row["accuracy"][split]
        cells.append(f"{acc['mean']:.3f} ± {acc['std']:.3f}")
    return cells


def roofline(env: dict) -> str:
    """The sgemm the 'of sgemm' column divides by, in words."""
    if env["sgemm_gflops"] is None:
        return "no sgemm roofline on a GPU"
    size = env["sgemm_size"]
    return (
        f"'of sgemm': of a {size}x{size}x{size} fp32 torch.matmul at {env['sgemm_gflops']:.1f} GFLOP/s "
        f"on {env['threads']} threads, timed in this run"
    )


def table(report: dict):
    from rich.table import Table

    splits = list(report["config"]["splits"])
    seeds = len(report["config"]["seeds"])
    env = report["environment"]
    out = Table(
        title=f"fastddpm bench on {env['device']} (accuracy: mean ± std over {seeds} seeds)",
        caption=roofline(env),
    )
    for column in (*COLUMNS, *(f"acc {s}" for s in splits)):
        out.add_column(column, justify="right")
    for row in report["rows"]:
        out.add_row(*_cells(row, splits))
    return out


def sampling_text(config: dict) -> str:
    """' at timesteps 0-450' for a bench whose guidance applied in an interval, '; logsnr timesteps for every
    sampler' for one on another grid than each sampler's own (older reports have neither)."""
    interval, spacing = config.get("guidance_interval"), config.get("spacing")
    text = "" if interval is None else f" at timesteps {format_interval(interval)}"
    return text + ("" if spacing is None else f"; {spacing} timesteps for every sampler")


def markdown(report: dict) -> str:
    splits = list(report["config"]["splits"])
    env = report["environment"]
    header = [*COLUMNS, *(f"acc {s}" for s in splits)]
    lines = [
        f"# fastddpm bench, {report['stamp']}",
        "",
        f"Device: {env['device']}; torch {env['torch']}; checkpoint {env['checkpoint']} "
        f"({env['checkpoint_sha256'][:12]}); evaluator: {env['evaluator']}"
        f" ({env['evaluator_sha256'][:12]}).",
        f"Latency: one split of {report['split_size']} images, median / p90 over "
        f"{report['rows'][0]['latency_ms']['runs']} runs after a warm-up; accuracy: mean ± std over seeds "
        f"{report['config']['seeds']}; guidance {report['config']['guidance']}{sampling_text(report['config'])}.",
        f"Arithmetic: {env['gflop_per_image_call']:.3f} GFLOP per image and network call (torch's FLOP counter); "
        f"GFLOP/s = calls x rows x that / median latency, guidance doubling the rows; {roofline(env)}.",
        f"Command: `{report['command']}`",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(_cells(row, splits)) + " |" for row in report["rows"]]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for split in report["config"]["splits"]:
        xs = [r["latency_ms"]["median"] for r in report["rows"]]
        ys = [r["accuracy"][split]["mean"] for r in report["rows"]]
        errs = [r["accuracy"][split]["std"] for r in report["rows"]]
        ax.errorbar(xs, ys, yerr=errs, fmt="o", capsize=3, label=split)
        for r, x, y in zip(report["rows"], xs, ys, strict=True):
            ax.annotate(
                f"{r['backend']} {r['sampler']}-{r['steps']}",
                (x, y),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xscale("log")
    ax.set_xlabel("latency of one split (ms, log scale)")
    ax.set_ylabel("evaluator accuracy")
    ax.set_title(report["environment"]["device"], fontsize=8)
    ax.legend()
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_report(report: dict, results_dir: Path) -> Path:
    """Write JSON, markdown, plot and grids; returns the JSON path."""
    from fastddpm.sampling.job import save_grid

    grids = report.pop("grids")
    stem = results_dir / report["stamp"]
    for name, images in grids.items():
        save_grid(stem / f"{name}.png", images)
    plot(report, stem.with_suffix(".png"))
    atomic.write_text(stem.with_suffix(".md"), markdown(report))
    atomic.write_text(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    return stem.with_suffix(".json")
