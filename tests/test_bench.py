import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fastddpm.atomic import file_sha256
from fastddpm.bench.flops import gflop_per_image_call, model_gflop_per_image_call
from fastddpm.cli import app
from fastddpm.configs import DiffusionConfig, SampleSettings
from fastddpm.sampling.batch import generate
from fastddpm.sampling.samplers import SAMPLERS, rows_per_image, sampler_spec
from fastddpm.schedule import NoiseSchedule


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory, tiny_model, tiny_evaluator) -> Path:
    """The JSON of a small CPU bench run: ddim and dpmpp at 2 steps on the karras grid, seeds 0 and 1, one 3-image
    split."""
    tmp_path = tmp_path_factory.mktemp("bench")
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
            "--spacing",
            "karras",
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
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    [report_path] = list((tmp_path / "results").glob("*.json"))
    return report_path


def test_bench_json_schema(bench_report, tiny_evaluator):
    report_path = bench_report
    report = json.loads(report_path.read_text())
    assert set(report) >= {"config", "environment", "rows", "stamp", "command", "split_size"}
    assert set(report["environment"]) >= {
        "device",
        "torch",
        "checkpoint_sha256",
        "evaluator",
        "threads",
        "gflop_per_image_call",
        "sgemm_gflops",
        "sgemm_size",
    }
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
            "network_calls",
            "rows_per_call",
            "gflop_per_image_call",
            "achieved_gflops",
            "sgemm_fraction",
        }
        assert row["latency_ms"]["runs"] == 2 and row["latency_ms"]["median"] > 0
        acc = row["accuracy"]["mini"]
        assert len(acc["per_seed"]) == 2 and 0 <= acc["mean"] <= 1 and acc["std"] >= 0
    stem = report_path.with_suffix("")
    assert report_path.with_suffix(".md").is_file() and report_path.with_suffix(".png").is_file()
    assert (stem / "torch-ddim-2-mini.png").is_file()
    assert "| backend |" in report_path.with_suffix(".md").read_text()


def test_bench_arithmetic_is_consistent(bench_report, tiny_model):
    report = json.loads(bench_report.read_text())
    env, guidance = report["environment"], report["config"]["guidance"]
    assert guidance != 1.0  # the tiny model's card guides, so every call has conditional and null rows
    assert env["gflop_per_image_call"] == pytest.approx(model_gflop_per_image_call(tiny_model))
    assert env["gflop_per_image_call"] > 0 and env["sgemm_gflops"] > 0
    markdown = bench_report.with_suffix(".md").read_text()
    assert f"at {env['sgemm_gflops']:.1f} GFLOP/s on {env['threads']} threads" in markdown
    for row in report["rows"]:
        assert row["network_calls"] == row["steps"]
        assert row["rows_per_call"] == 2 * report["split_size"]
        assert row["gflop_per_image_call"] == env["gflop_per_image_call"]
        work = row["network_calls"] * row["rows_per_call"] * row["gflop_per_image_call"]
        assert row["achieved_gflops"] == pytest.approx(work / (row["latency_ms"]["median"] / 1000))
        assert row["sgemm_fraction"] == pytest.approx(row["achieved_gflops"] / env["sgemm_gflops"])
        cells = f"| {row['gflop_per_image_call']:.3f} | {row['achieved_gflops']:.1f} | {row['sgemm_fraction']:.0%} |"
        assert cells in markdown


def test_flops_are_counted_on_one_image():
    conv = torch.nn.Conv2d(3, 3, 3, padding=1, bias=False)
    eps_fn = lambda x, t, cond: conv(x)
    assert gflop_per_image_call(eps_fn) == pytest.approx(2 * 3 * 3 * 9 * 64 * 64 / 1e9)


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_network_calls_and_rows_are_what_the_samplers_do(name, scale):
    schedule = NoiseSchedule.from_config(DiffusionConfig())
    spec, calls, rows = sampler_spec(name), [], []

    def eps_fn(x, t, cond):
        calls.append(1)
        rows.append(len(x))
        return torch.zeros_like(x)

    settings = SampleSettings(name, 3, 0.0, scale, batch_size=5)
    generate(eps_fn, schedule, torch.zeros(4, 24), list(range(4)), settings)
    assert len(calls) == spec.network_calls(3)
    assert set(rows) == {5 * rows_per_image(scale)}  # the last chunk is padded to batch_size


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_rerunning_a_split_reproduces_the_reports_per_seed_accuracy(
    bench_report, tiny_model, tiny_evaluator, tmp_path
):
    """The oracle: every (row, split, seed) cell of the JSON is what sampling that split again and scoring it
    gives (same weights, settings, seeds and evaluator, on the same CPU), and the seed-0 grid the bench saved
    is of those images (the tiny random evaluator scores near 0, so the images carry the check)."""
    from fastddpm.conditions import multi_hot, read_test_labels
    from fastddpm.evaluator.network import Evaluator
    from fastddpm.export import open_backend
    from fastddpm.model import load_card
    from fastddpm.sampling.batch import generate_split
    from fastddpm.sampling.job import save_grid

    report = json.loads(bench_report.read_text())
    labels = read_test_labels(bench_report.parent.parent / "mini.json")
    backend = open_backend("torch", tiny_model, torch.device("cpu"), torch.float32)
    schedule = NoiseSchedule.from_config(load_card(tiny_model).diffusion)
    evaluator = Evaluator(tiny_evaluator, "cpu")
    cells = 0
    for row in report["rows"]:
        settings = SampleSettings(
            row["sampler"],
            row["steps"],
            0.0,
            report["config"]["guidance"],
            len(labels),
            spacing=report["config"]["spacing"],
        )
        for seed, expected in zip(
            report["config"]["seeds"], row["accuracy"]["mini"]["per_seed"], strict=True
        ):
            images = generate_split(backend, schedule, labels, settings, seed, "cpu")
            assert evaluator.accuracy(images, multi_hot(labels)) == expected
            if seed == report["config"]["seeds"][0]:  # the grid the bench saved holds these very images
                save_grid(tmp_path / "grid.png", images)
                saved = bench_report.with_suffix("") / f"torch-{row['sampler']}-{row['steps']}-mini.png"
                assert (tmp_path / "grid.png").read_bytes() == saved.read_bytes()
            cells += 1
    assert cells == len(report["rows"]) * len(report["config"]["seeds"])
    assert report["config"]["spacing"] == "karras"
    assert "karras timesteps for every sampler" in bench_report.with_suffix(".md").read_text()


@pytest.mark.slow
def test_model_soup_averages_the_weights_and_refuses_what_it_cannot_average(tmp_path):
    from conftest import make_tiny_model
    from safetensors.torch import load_file

    script = Path(__file__).resolve().parents[1] / "bench" / "model_soup.py"
    first, second = (make_tiny_model(tmp_path / f"m{seed}", seed=seed) for seed in (0, 1))
    pair = ["--model", str(first), "--model", str(second)]
    done = subprocess.run(
        [sys.executable, str(script), *pair, "--out", str(tmp_path / "soup")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    weights = [load_file(str(folder / "model.safetensors")) for folder in (first, second, tmp_path / "soup")]
    for key, value in weights[2].items():
        mean = (weights[0][key].float() + weights[1][key].float()) / 2
        assert torch.allclose(value.float(), mean, atol=2e-3), key
    card = json.loads((tmp_path / "soup" / "config.json").read_text())
    assert [entry["folder"] for entry in card["info"]["soup"]] == [str(first), str(second)]
    assert card["info"]["render"] == json.loads((first / "config.json").read_text())["info"]["render"]

    headed = make_tiny_model(tmp_path / "headed", refine=8)
    refused = {
        "one": ["--model", str(first)],
        "twice": ["--model", str(first), "--model", str(first)],
        "another architecture": ["--model", str(first), "--model", str(headed)],
        "out not empty": [*pair, "--out", str(tmp_path / "soup")],
    }
    for case, args in refused.items():
        out = [] if "--out" in args else ["--out", str(tmp_path / case)]
        done = subprocess.run([sys.executable, str(script), *args, *out], capture_output=True, text=True)
        assert done.returncode == 2 and "Traceback" not in done.stderr, case
        assert len(done.stderr.strip().splitlines()) == 1, case
        assert not (tmp_path / case).exists(), case
