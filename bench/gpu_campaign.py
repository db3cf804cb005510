"""The whole GPU campaign in one command that cannot fail as a whole (bench/results/gpu/CAMPAIGN.md).

    python bench/gpu_campaign.py --out results/              # on a CUDA machine: about 9 minutes
    python bench/gpu_campaign.py --out /tmp/dry --dry-run    # every stage at toy sizes on the CPU (<= 3 min)
    python bench/gpu_campaign.py --collect FOLDER            # here: check and file what a GPU run brought back

Stages a-h (bench/campaign/stages.py) run one after another, each in its own process with a hard time limit; the
train stage gets what the budget leaves after the later ones. A stage that fails records its error (one line in
campaign.json, the traceback in results.tar) and the next one starts. OUT receives at most 8 files of at most
16 MiB: campaign.json and results.tar (rewritten after every stage) and the trained model as model.tar.partNN;
everything else stays in --work. stdout carries one line per stage.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign.context import BudgetStop, Skipped, StageContext  # noqa: E402
from campaign.stages import STAGES  # noqa: E402
from campaign.summary import stage_line  # noqa: E402

from fastddpm import atomic  # noqa: E402
from fastddpm.errors import UsageError  # noqa: E402
from fastddpm.folders import probe_writable, quote  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GRACE_S = 10  # past a stage's deadline before its process group is killed
LOG_TAIL_BYTES = 200_000  # of each log, into results.tar
MIN_TRAIN_S = {False: 90, True: 5}


def run_stage_process(args: argparse.Namespace) -> int:
    """Inside a stage's own process: run it and record how it ended."""
    stage = next(s for s in STAGES if s.name == args.stage)
    ctx = StageContext(stage.name, args.out, args.work, args.deadline, args.dry_run, args.labels_dir)
    try:
        stage.run(ctx)
        ctx.save("ok")
    except Skipped as why:
        ctx.save(f"skipped: {why}")
    except BudgetStop as why:
        ctx.save(f"partial: {why}")
    except Exception as err:  # noqa: BLE001 - a failing stage is recorded, and the campaign goes on
        (ctx.work / "results" / f"{stage.name}.traceback.txt").write_text(traceback.format_exc())
        ctx.save(f"error: {type(err).__name__}: {str(err)[:240]}")
        return 1
    return 0


def launch(stage, args: argparse.Namespace, work: Path, budget: float, grace_s: float = GRACE_S) -> dict:
    """Run one stage in its own process group, killed `grace_s` past its deadline; returns its campaign.json
    record."""
    deadline = time.time() + budget
    argv = [sys.executable, str(Path(__file__).resolve()), "--stage", stage.name, "--out", str(args.out)]
    argv += ["--work", str(work), "--deadline", str(deadline)]
    argv += ["--labels-dir", str(args.labels_dir)] if args.labels_dir else []
    argv += ["--dry-run"] if args.dry_run else []
    log = work / "logs" / f"{stage.name}.log"
    start = time.perf_counter()
    with log.open("wb") as sink:
        child = subprocess.Popen(
            argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code, killed = child.wait(timeout=budget + grace_s), False
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            code, killed = child.wait(), True
    result_file = work / "results" / f"{stage.name}.json"
    saved = json.loads(result_file.read_text()) if result_file.is_file() else {"status": "", "result": {}}
    status = saved["status"]
    if killed:
        status = f"timeout: killed after {budget:.0f} s (last saved status: {status or 'nothing saved'})"
    elif not status or status == "running":
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
        status = f"error: exit {code} before the stage recorded an end: {' '.join(tail)[-200:]}"
    return {
        "stage": f"{stage.letter}. {stage.name}",
        "status": status,
        "seconds": round(time.perf_counter() - start, 1),
        "budget_s": round(budget, 1),
        "result_file": f"results/{stage.name}.json",
        "traceback_file": f"results/{stage.name}.traceback.txt"
        if (work / "results" / f"{stage.name}.traceback.txt").is_file()
        else None,
        "result": saved["result"],
    }


def write_results_tar(work: Path, out: Path) -> None:
    """results/ (every stage's JSON, tracebacks, sample grids) and the tail of every log, as OUT/results.tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted((work / "results").rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(work)))
        for path in sorted((work / "logs").glob("*.log")):
            data = path.read_bytes()[-LOG_TAIL_BYTES:]
            info = tarfile.TarInfo(str(path.relative_to(work)))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    atomic.write_bytes(out / "results.tar", buffer.getvalue())


def file_list(out: Path) -> list[dict]:
    return [
        {"name": p.name, "bytes": p.stat().st_size, "sha256": atomic.file_sha256(p)}
        for p in sorted(out.iterdir())
        if p.is_file() and p.name != "campaign.json"
    ]


def run_campaign(args: argparse.Namespace) -> int:
    started = time.time()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    work = args.work / stamp
    for sub in ("results", "logs"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    record = {
        "campaign": "fastddpm GPU campaign (bench/gpu_campaign.py)",
        "started_utc": stamp,
        "budget_s": args.budget_s,
        "dry_run": args.dry_run,
        "command": " ".join(sys.argv),
        "work": str(work),
        "stages": [],
        "files": [],
    }
    fixed = {s.name: s.budget_s for s in STAGES if s.budget_s is not None}
    for i, stage in enumerate(STAGES):
        left = args.budget_s - (time.time() - started)
        later = sum(fixed[s.name] for s in STAGES[i + 1 :] if s.budget_s is not None)
        budget = min(stage.budget_s, left - 5) if stage.budget_s is not None else left - later - 10
        if budget < (MIN_TRAIN_S[args.dry_run] if stage.budget_s is None else 3):
            entry = {"stage": f"{stage.letter}. {stage.name}", "status": "skipped: budget", "seconds": 0.0}
            entry |= {"budget_s": round(budget, 1), "result_file": None, "traceback_file": None, "result": {}}
        else:
            entry = launch(stage, args, work, budget)
        record["stages"].append(entry)
        write_results_tar(work, args.out)
        record["files"] = file_list(args.out)
        record["elapsed_s"] = round(time.time() - started, 1)
        atomic.write_json(args.out / "campaign.json", record)
        print(stage_line(entry), flush=True)
    ended = [e["status"].split(":")[0] for e in record["stages"]]
    counts = ", ".join(f"{ended.count(k)} {k}" for k in dict.fromkeys(ended))
    print(
        f"campaign: {counts} in {record['elapsed_s']:.0f} s; {len(record['files']) + 1} files in {args.out}"
    )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="folder that comes back: empty or new")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fastddpm-campaign"), help="scratch folder")
    parser.add_argument("--budget-s", type=float, default=540.0, help="seconds for all stages together")
    parser.add_argument(
        "--labels-dir", type=Path, default=ROOT / ".course", help="course test.json, new_test.json"
    )
    parser.add_argument("--dry-run", action="store_true", help="every stage at toy sizes (CPU)")
    parser.add_argument("--collect", type=Path, help="file a GPU run's output folder into the repository")
    parser.add_argument(
        "--results-dir", type=Path, help="--collect: where runs are filed (bench/results/gpu)"
    )
    parser.add_argument("--candidate-dir", type=Path, help="--collect: the model (checkpoints/gpu-candidate)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.collect is None and args.out is None:
        refuse("give --out DIR (run the campaign) or --collect FOLDER")
    if args.stage is None and args.collect is None:
        if not 60 <= args.budget_s <= 3600:
            refuse(f"--budget-s {args.budget_s:g} is out of range: 60 to 3600 seconds")
        if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
            refuse(f"--out {quote(args.out)} is not an empty folder; the campaign needs a fresh one")
        try:
            probe_writable(args.out)
            args.out.mkdir(parents=True, exist_ok=True)
        except UsageError as err:
            refuse(str(err))
        except OSError as err:
            refuse(f"--out {quote(args.out)} cannot be created: {err.strerror}")
    return args


def refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.collect is not None:
        from campaign.collect import CANDIDATE, RESULTS, collect

        return collect(args.collect, args.results_dir or RESULTS, args.candidate_dir or CANDIDATE)
    if args.stage is not None:
        return run_stage_process(args)
    return run_campaign(args)


if __name__ == "__main__":
    sys.exit(main())
