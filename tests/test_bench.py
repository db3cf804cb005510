import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from fastddpm.atomic import file_sha256
from fastddpm.cli import app


def test_bench_json_schema(tmp_path, tiny_model, tiny_evaluator):
    split = tmp_path / "mini.json"
    split.write_text(
        json.dumps(
            [["red sphere"], ["cyan cube", "gray cylinder"], ["yellow cube", "blue sphere", "red cylinder"]]
        )
    )
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--sampler",
            "ddim,dpmpp",
            "--steps",
            "2",
            "--no-reference",
            "--seeds",
            "0,1",
            "--labels-file",
            str(split),
            "--checkpoint",
            str(tiny_model),
            "--evaluator",
            str(tiny_evaluator),
            "--results",
            str(tmp_path / "results"),
        ],
    )
    assert result.exit_code == 0, result.output
    [report_path] = list((tmp_path / "results").glob("*.json"))
    report = json.loads(report_path.read_text())
    assert set(report) >= {"config", "environment", "rows", "stamp", "command", "split_size"}
    assert set(report["environment"]) >= {"device", "torch", "checkpoint_sha256", "evaluator"}
    assert report["environment"]["evaluator_sha256"] == file_sha256(tiny_evaluator)
    assert [(r["sampler"], r["steps"]) for r in report["rows"]] == [("ddim", 2), ("dpmpp", 2)]
    for row in report["rows"]:
        assert set(row) == {
            "backend",
            "sampler",
            "steps",
            "latency_ms",
            "images_per_second",
            "peak_memory_mib",
            "accuracy",
            "warmup_seconds",
        }
        assert row["latency_ms"]["runs"] == 2 and row["latency_ms"]["median"] > 0
        acc = row["accuracy"]["mini"]
        assert len(acc["per_seed"]) == 2 and 0 <= acc["mean"] <= 1 and acc["std"] >= 0
    stem = report_path.with_suffix("")
    assert report_path.with_suffix(".md").is_file() and report_path.with_suffix(".png").is_file()
    assert (stem / "torch-ddim-2-mini.png").is_file()
    assert "| backend |" in report_path.with_suffix(".md").read_text()


def test_time_to_accuracy_splits_a_log_by_steps_and_refuses_bad_ranges(tmp_path, monkeypatch):
    script = Path(__file__).resolve().parents[1] / "bench" / "time_to_accuracy.py"
    monkeypatch.syspath_prepend(str(script.parent))
    import time_to_accuracy

    log = tmp_path / "metrics.jsonl"
    log.write_text(
        "".join(json.dumps({"step": s, "train_seconds": s, "acc_test": 0.5}) + "\n" for s in (10, 20, 30))
    )
    evals = time_to_accuracy.quick_evaluations(*time_to_accuracy.parse_run(f"{log}@15-30:late")[:2])
    assert [r["step"] for r in evals] == [20, 30]
    for spec in (f"{log}@1x-5:a", f"{tmp_path / 'missing.jsonl'}:a"):
        done = subprocess.run(
            [sys.executable, str(script), spec, "--name", "never"], capture_output=True, text=True
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert not (script.parent / "results" / "never.md").exists()


def test_pool_seeds_pools_alike_runs_and_refuses_others(tmp_path):
    script = Path(__file__).resolve().parents[1] / "bench" / "pool_seeds.py"

    def result(name, seeds, per_seed, guidance=2.0):
        row = {"backend": "torch", "sampler": "ddim", "steps": 10}
        row["accuracy"] = {"test": {"per_seed": per_seed}}
        record = {
            "environment": {"checkpoint_sha256": "a", "evaluator_sha256": "b"},
            "config": {"guidance": guidance, "splits": {"test": [["red cube"]]}, "seeds": seeds},
            "rows": [row],
        }
        (tmp_path / name).write_text(json.dumps(record))
        return str(tmp_path / name)

    first, more = result("a.json", [0, 1], [0.5, 0.7]), result("b.json", [2], [0.9])
    done = subprocess.run([sys.executable, str(script), first, more], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "| torch | ddim | 10 | 3 | 0.700 ± 0.200 |" in done.stdout
    refused = [[first, first], [first, result("c.json", [5], [0.1], guidance=3.0)], [first, str(script)]]
    for paths in refused:
        done = subprocess.run([sys.executable, str(script), *paths], capture_output=True, text=True)
        assert done.returncode == 2 and "Traceback" not in done.stderr and not done.stdout
