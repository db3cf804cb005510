"""Bad input, class by class: exit code 2, one line naming the value, no traceback, nothing left behind.
(The first table of cases is in test_cli.py; the property test with generated values is in test_cli_properties.py.)"""

from __future__ import annotations

import dataclasses

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import COURSE
from fastddpm.cli import app

runner = CliRunner()


def run(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def assert_refused(code: int, text: str, *fragments: str) -> None:
    assert code == 2, text
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(set(lines)) == 1, f"one message line expected:\n{text}"  # CliRunner may echo stderr twice
    flat = " ".join(text.split())
    for fragment in fragments:
        assert fragment in flat, f"{fragment!r} not in {flat!r}"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# Values out of range, refused where they are parsed ------------------------------------------------------------

SAMPLE = ["sample", "--labels", "red sphere", "--steps", "2"]
VALUES = [
    (["sample", "--labels", "red sphere", "--steps", "0"], ("'--steps'", "greater than or equal to 1")),
    ([*SAMPLE, "--guidance", "nan"], ("'--guidance'")),
    ([*SAMPLE, "--guidance", "-1"], ("'--guidance'")),
    ([*SAMPLE, "--guidance", "inf"], ("--guidance inf", "finite")),
    ([*SAMPLE, "--guidance-interval", "450-0"], ("--guidance-interval 450-0", "0 <= LO <= HI")),
    ([*SAMPLE, "--guidance-interval", "low"], ("--guidance-interval", "'low'", "LO-HI")),
    ([*SAMPLE, "--guidance-interval", "0-1000"], ("--guidance-interval 0-1000", "timesteps 0 to 999")),
    (["bench", "--guidance-interval", "0,450"], ("--guidance-interval", "'0,450'", "LO-HI")),
    (["bench", "--guidance-interval", "0-1000", "--no-reference"], ("--guidance-interval 0-1000", "0 to 999")),
    ([*SAMPLE, "--spacing", "cosine"], ("--spacing 'cosine'", "own, leading", "logsnr, karras")),
    (
        [*SAMPLE, "--steps", "38", "--spacing", "logsnr"],
        ("--steps 38", "1 to 37 steps", "logsnr grid repeats"),
    ),
    (
        ["bench", "--spacing", "karras", "--steps", "10,78", "--no-reference"],
        ("--steps 78", "1 to 77 steps"),
    ),
    ([*SAMPLE, "--eta", "-0.5"], ("'--eta'")),
    ([*SAMPLE, "--sampler", "dpmpp", "--eta", "0.5"], ("--eta 0.5", "dpmpp takes no eta")),
    ([*SAMPLE, "--batch-size", "0"], ("'--batch-size'")),
    ([*SAMPLE, "--seed", "-3"], ("'--seed'")),
    (["bench", "--steps", "0", "--no-reference"], ("--steps 0", ">= 1")),
    (["bench", "--seeds", "0,-1", "--no-reference"], ("--seeds -1")),
    (["bench", "--sampler", "ddim,euler"], ("--sampler 'euler'")),
    (["train", "--patch", "3"], ("--patch 3", "divide")),
    (["train", "--lr", "0"], ("--lr 0.0", "> 0")),
    (["train", "--gpus", "0"], ("'--gpus'")),
    (["train", "--eval-minutes", "-1"], ("'--eval-minutes'")),
    (["train", "--attention", "9"], ("--attention 9", "levels 0 to 2")),
    (["train", "--channels", "64,100"], ("--channels", "multiple of 32")),
    (["train", "--epochs", "nan"], ("--epochs nan")),
    (["train", "--cond-drop", "1"], ("--cond-drop 1.0", "[0, 1)")),
    (["train", "--refine", "-1"], ("'--refine'", "greater than or equal to 0")),
    (["export", "--batch-profile", "0:1:2"], ("1 <= MIN")),
    ([*SAMPLE, "--seed", "99999999999999999999"], ("'--seed'", "less than or equal to 4294967295")),
    ([*SAMPLE, "--batch-size", "99999999999999999999"], ("'--batch-size'", "less than or equal to 65536")),
    (["bench", "--seeds", "0,99999999999", "--no-reference"], ("--seeds 99999999999", "<= 4294967295")),
    (["data", "render", "--scenes", "99999999999999999999"], ("'--scenes'", "less than or equal to 1000000")),
]


@pytest.mark.parametrize("args, fragments", VALUES)
def test_values_are_checked_where_parsed(tmp_path, tiny_model, tiny_data, args, fragments):
    out = tmp_path / "out"
    extra = {
        "sample": ["--out", out, "--model", tiny_model],
        "bench": ["--out", out, "--model", tiny_model, "--labels-file", COURSE / "test.json"],
        "train": ["--data", tiny_data, "--out", out],
        "export": ["--out", out, "--model", tiny_model],
        "data": ["--out", out],
    }[args[0]]
    assert_refused(*run(*args, *extra), *fragments)
    assert not out.exists()


# Output locations, checked before any work -------------------------------------------------------------------


@pytest.mark.parametrize("command", ["sample", "bench", "train", "render", "export", "evaluator"])
@pytest.mark.parametrize("where", ["file", "under a file"])
def test_output_locations_are_checked_first(tmp_path, tiny_model, tiny_data, command, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "sub"
    args = {
        "sample": ["sample", "--labels", "red sphere", "--steps", "2", "--model", tiny_model, "--out", out],
        "bench": ["bench", "--model", tiny_model, "--labels-file", COURSE / "test.json", "--out", out],
        "train": ["train", "--data", tiny_data, "--out", out, "--epochs", "1"],
        "render": ["data", "render", "--scenes", "1", "--out", out],
        "export": ["export", "--model", tiny_model, "--out", out],
        "evaluator": ["evaluator", "train", "--data", tiny_data, "--out", out, "--epochs", "1"],
    }[command]
    assert_refused(*run(*args), repr(str(out)))
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_location(tmp_path, tiny_model):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert_refused(
        *run("sample", "--labels", "red sphere", "--model", tiny_model, "--out", locked / "s"),
        "cannot be written",
    )


# Outputs never mix -------------------------------------------------------------------------------------------


def test_sample_replaces_only_its_own_earlier_files(tmp_path, tiny_model):
    out = tmp_path / "samples"
    labels = tmp_path / "three.json"
    labels.write_text(json.dumps([["red sphere"], ["cyan cube"], ["gray cylinder"]]))
    code, text = run("sample", "--labels-file", labels, "--steps", "2", "--model", tiny_model, "--out", out)
    assert code == 0, text
    code, text = run("sample", "--labels", "red sphere", "--steps", "2", "--model", tiny_model, "--out", out)
    assert code == 0 and "replaced the 4 files of earlier samples" in " ".join(text.split()), text
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "grid.png", "sample.json"]
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    assert_refused(*run("sample", "--labels", "red sphere", "--model", tiny_model, "--out", out), "notes.txt")
    assert snapshot(out) == before


def test_render_refuses_a_folder_of_samples(tmp_path, tiny_model):
    out = tmp_path / "samples"
    assert (
        run("sample", "--labels", "red sphere", "--steps", "2", "--model", tiny_model, "--out", out)[0] == 0
    )
    before = snapshot(out)
    assert_refused(*run("data", "render", "--scenes", "1", "--out", out), "did not write")
    assert snapshot(out) == before


def test_evaluator_train_never_overwrites_without_force(tmp_path, tiny_data):
    out = tmp_path / "evaluator"
    out.mkdir()
    (out / "evaluator.pth").write_bytes(b"precious")
    assert_refused(*run("evaluator", "train", "--data", tiny_data, "--out", out, "--epochs", "1"), "--force")
    assert (out / "evaluator.pth").read_bytes() == b"precious"
    assert_refused(*run("evaluator", "train", "--data", tiny_data, "--out", tmp_path / "e.pth"), "run folder")


def test_evaluator_train_refuses_an_init_that_is_no_evaluator(tmp_path, tiny_data, tiny_model):
    out = tmp_path / "evaluator"
    for init in (tmp_path / "missing.pth", tiny_model, tiny_model / "model.safetensors"):
        command = ("evaluator", "train", "--data", tiny_data, "--out", out, "--init", init, "--epochs", "1")
        code, text = run(*command)
        assert_refused(code, text, str(init))
        assert "--evaluator" not in text, "the message names the option the user gave"
        assert not out.exists()


# Text is text ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", ["red [/] sphere", "[bold]red sphere", "a:b:c", "red :smile: sphere"])
def test_user_text_is_printed_literally(tmp_path, tiny_model, labels):
    code, text = run("sample", "--labels", labels, "--model", tiny_model, "--out", tmp_path / "s")
    assert_refused(code, text, labels)
    assert "😄" not in text


def test_help_keeps_every_word():
    code, text = run("export", "--help")
    assert code == 0 and "fastddpm[trt]" in text, text
    code, text = run("train", "--help")
    assert code == 0 and "256 on CUDA" in " ".join(text.replace("│", " ").split()), text
    code, text = run("--version")
    assert code == 0 and text.startswith("fastddpm ")


def test_sample_help_lists_each_samplers_default_steps():
    from fastddpm.sampling.samplers import SAMPLERS

    _, text = run("sample", "--help")
    flat = " ".join(text.replace("│", " ").split())
    for name, spec in SAMPLERS.items():
        assert f"{name} {spec.default_steps}" in flat, (name, flat)


# Files that are not what they claim --------------------------------------------------------------------------


def test_evaluator_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00garbage")
    images = tmp_path / "images"
    images.mkdir()
    for bad, fragment in ((garbage, "not a course evaluator checkpoint"), (tmp_path, "is a folder")):
        code, text = run(
            "evaluator",
            "score",
            "--images",
            images,
            "--labels-file",
            COURSE / "test.json",
            "--evaluator",
            bad,
        )
        assert_refused(code, text, fragment)
        assert "weights_only" not in text


def test_model_files(tmp_path, tiny_model):
    run_folder = tmp_path / "run"
    (run_folder / "model").mkdir(parents=True)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"junk")
    for bad, fragment in (
        (run_folder, "run keeps its model in"),
        (garbage, "is not a model folder"),
        (tmp_path / "none", "not a model folder"),
    ):
        assert_refused(
            *run("sample", "--labels", "red sphere", "--model", bad, "--out", tmp_path / "s"), fragment
        )


def test_truncated_png_is_named(tmp_path, tiny_model):
    out = tmp_path / "s"
    labels = tmp_path / "one.json"
    labels.write_text(json.dumps([["red sphere"]]))
    assert run("sample", "--labels-file", labels, "--steps", "2", "--model", tiny_model, "--out", out)[0] == 0
    data = (out / "0.png").read_bytes()
    (out / "0.png").write_bytes(data[: len(data) // 2])
    assert_refused(
        *run("evaluator", "score", "--images", out, "--labels-file", labels), "0.png", "not a readable PNG"
    )


def test_empty_label_file(tmp_path, tiny_model):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert_refused(
        *run("sample", "--labels-file", empty, "--model", tiny_model, "--out", tmp_path / "s"),
        "holds no label lists",
    )
    assert not (tmp_path / "s").exists()


def test_corrupt_run_config_on_resume(tmp_path, tiny_data):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{not json")
    assert_refused(
        *run("train", "--data", tiny_data, "--out", out, "--resume"), "is not a fastddpm run config"
    )


def test_an_option_the_run_decides_is_refused_beside_resume(tmp_path, tiny_data):
    out = tmp_path / "run"
    code, text = run("train", "--data", tiny_data, "--out", out, "--device", "cpu", "--epochs", "0.5")
    assert code == 0, text
    before = snapshot(out)
    for option in (["--lr", "0.1"], ["--refine", "8"], ["--preset", "cpu"], ["--min-snr-gamma", "0"]):
        assert_refused(
            *run("train", "--data", tiny_data, "--out", out, "--resume", *option),
            f"{option[0]} cannot be given with --resume",
            "config.json",
        )
    assert snapshot(out) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu(tmp_path, tiny_model):
    assert_refused(
        *run(
            "sample",
            "--labels",
            "red sphere",
            "--model",
            tiny_model,
            "--device",
            "cuda",
            "--out",
            tmp_path / "s",
        ),
        "no CUDA device",
    )
    assert not (tmp_path / "s").exists()


def test_readme_pictures_are_committed():
    import re

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert links, "the README shows pictures"
    for link in links:
        assert (root / link).is_file(), f"README shows {link}, which is not in the repository"


# Bad input checked before work, contradictions refused, hostile files ------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model, tiny_data) -> dict[str, Path]:
    """Files the cases below name as {key}: a student, a model folder with junk weights, an empty export
    folder, a garbage evaluator, a training run, label files nested 100,000 deep or holding a 50 MB label, and
    data folders whose train.json is nested or names an image outside its folder or too long a name, or whose
    test.json is cut short."""
    import shutil

    from conftest import make_tiny_model
    from fastddpm.card import StudentInfo
    from fastddpm.configs import TrainConfig
    from fastddpm.model import ModelCard, load_card

    root = tmp_path_factory.mktemp("inputs")
    student = make_tiny_model(root / "student")
    card = load_card(student)
    info = dataclasses.replace(card.info, student=StudentInfo(sampler="ddim", steps=2, guidance_folded=3.0))
    (student / "config.json").write_text(ModelCard(card.model, card.diffusion, info, card.sampling).to_json())
    shutil.copytree(tiny_model, root / "junk-weights")
    (root / "junk-weights" / "model.safetensors").write_bytes(b"junk")
    (root / "no-export").mkdir()
    (root / "garbage.pth").write_bytes(b"\x00garbage")
    run_folder = root / "train-run"
    run_folder.mkdir()
    (run_folder / "config.json").write_text(
        json.dumps(TrainConfig(str(tiny_data), str(run_folder)).to_dict())
    )
    deep = "[" * 100_000 + "]" * 100_000
    (root / "deep.json").write_text(deep)
    (root / "huge.json").write_text(json.dumps([["x" * 50_000_000]]))
    (root / "four.json").write_text(json.dumps([["red sphere", "cyan cube", "gray cube", "blue cylinder"]]))
    shutil.copytree(tiny_data, root / "deep-data")
    (root / "deep-data" / "train.json").write_text(deep)
    for name, image in (("long-name-data", "x" * 5000), ("escape-data", "../../victim.png")):
        shutil.copytree(tiny_data, root / name)
        (root / name / "train.json").write_text(json.dumps({image: ["red sphere"]}))
    shutil.copytree(tiny_data, root / "bad-split-data")
    (root / "bad-split-data" / "test.json").write_text("[[")
    return {
        "model": tiny_model,
        "data": tiny_data,
        "labels": COURSE / "test.json",
        **{p.stem.replace("-", "_"): p for p in root.iterdir()},
    }


SMALL_RUN = ["--stage-steps", "1", "--batch-size", "2", "--device", "cpu"]
DISTILL = ["distill", "--model", "{model}", "--data", "{data}", "--out", "{out}", *SMALL_RUN]
BENCH = ["bench", "--model", "{model}", "--labels-file", "{labels}", "--out", "{out}", "--no-reference"]
BENCH_TINY = [*BENCH, "--steps", "1", "--seeds", "0", "--device", "cpu"]
SAMPLE_INTO = ["sample", "--steps", "1", "--out", "{out}", "--device", "cpu"]
TRAIN_TINY = ["train", "--data", "{data}", "--out", "{out}", "--epochs", "0.1", "--device", "cpu"]
EVAL_TRAIN = ["evaluator", "train", "--data", "{data}", "--out", "{out}", "--epochs", "1", "--device", "cpu"]
BEFORE_WORK = [
    # distill: every value checked before the folding stage and before the run folder exists
    ([*DISTILL, "--from-steps", "2048"], ("--from-steps 2048", "1000 timesteps")),
    ([*DISTILL, "--model", "{student}", "--guidance", "2"], ("--guidance 2.0", "3.0 folded in")),
    ([*DISTILL, "--model", "{student}", "--from-steps", "8"], ("--from-steps 8", "samples with 2 steps")),
    ([*DISTILL, "--data", "{bad_split_data}"], ("bad-split-data", "test.json", "not valid JSON")),
    ([*DISTILL, "--model", "{junk_weights}"], ("junk-weights", "model.safetensors", "does not match")),
    # every backend opened (its package, device and export) before the first image or row
    (
        [*BENCH_TINY, "--backend", "torch,ort", "--export-dir", "{no_export}"],
        ("no .onnx export", "no-export"),
    ),
    ([*BENCH_TINY, "--backend", "torch,openvino", "--export-dir", "{no_export}"], ("no .onnx export",)),
    (
        [*SAMPLE_INTO, "--labels", "red sphere", "--backend", "ort", "--export-dir", "{no_export}"],
        ("no .onnx export", "no-export"),
    ),
    # comma lists: a value given twice is refused
    ([*BENCH, "--seeds", "0,0"], ("--seeds 0 is given twice",)),
    ([*BENCH, "--steps", "4,4"], ("--steps 4 is given twice",)),
    ([*BENCH, "--sampler", "ddim,dpmpp,ddim"], ("--sampler 'ddim' is given twice",)),
    ([*BENCH, "--backend", "torch,torch"], ("--backend 'torch' is given twice",)),
    # a distilled student samples with guidance 1 only
    (
        [*SAMPLE_INTO, "--labels", "red sphere", "--model", "{student}", "--guidance", "3"],
        ("--guidance 3.0", "--guidance 1"),
    ),
    ([*BENCH, "--model", "{student}", "--guidance", "3"], ("--guidance 3.0", "folded in", "--guidance 1")),
    (
        [*SAMPLE_INTO, "--labels", "red sphere", "--model", "{student}", "--spacing", "karras"],
        ("--spacing karras", "the grid it was distilled on"),
    ),
    # --model names a model folder, not a file in one
    (
        [*SAMPLE_INTO, "--labels", "red sphere", "--model", "{model}/model.safetensors"],
        ("not a model folder",),
    ),
    ([*SAMPLE_INTO, "--labels", "red sphere", "--model", "{model}/config.json"], ("config.json", "a file")),
    # an evaluator given is checked even when the quick evaluation is off
    (
        [*TRAIN_TINY, "--evaluator", "{garbage}", "--eval-minutes", "0"],
        ("garbage.pth", "not a course evaluator"),
    ),
    # --init names a trained model folder, which decides the architecture
    ([*TRAIN_TINY, "--init", "{model}/missing"], ("--init", "missing", "not a model folder")),
    ([*TRAIN_TINY, "--init", "{model}/config.json"], ("--init", "config.json", "a file")),
    ([*TRAIN_TINY, "--init", "{student}"], ("--init", "is a distilled student")),
    ([*TRAIN_TINY, "--init", "{model}", "--patch", "2"], ("--patch cannot be given with --init",)),
    # the min-SNR floor is a weight, and only with min-SNR on
    ([*TRAIN_TINY, "--min-snr-floor", "1.5"], ("'--min-snr-floor'", "less than or equal to 1")),
    (
        [*TRAIN_TINY, "--min-snr-floor", "0.2", "--min-snr-gamma", "0"],
        ("--min-snr-floor 0.2", "--min-snr-gamma > 0"),
    ),
    # --freeze-body trains the head of a trained model
    ([*TRAIN_TINY, "--freeze-body"], ("--freeze-body", "give --init")),
    (
        [*TRAIN_TINY, "--init", "{model}", "--freeze-body"],
        ("--freeze-body", "no refinement head", "--refine N"),
    ),
    # a network too large for the machine's memory, refused before any allocation
    ([*TRAIN_TINY, "--refine", "1000000"], ("--refine 1000000", "parameters", "GiB")),
    ([*TRAIN_TINY, "--channels", "320000,320000", "--attention", "1"], ("--channels 320000,320000", "GiB")),
    # validation images are never trained on
    (
        [*EVAL_TRAIN, "--batch-size", "2", "--validation", "{data}"],
        ("--validation", "is also given as --data"),
    ),
    ([*EVAL_TRAIN, "--batch-size", "2", "--data", "{data}"], ("--data", "is given twice")),
    # hostile files and values: one short line
    ([*SAMPLE_INTO, "--labels-file", "{deep}"], ("deep.json", "nested too deeply")),
    ([*BENCH, "--labels-file", "{deep}"], ("deep.json", "nested too deeply")),
    (["data", "check", "--data", "{deep_data}"], ("train.json", "nested too deeply")),
    (["data", "check", "--data", "{long_name_data}"], ("missing from", "'xxxx")),
    (
        ["data", "check", "--data", "{escape_data}"],
        ("train.json names '../../victim.png'", "not a file inside"),
    ),
    ([*SAMPLE_INTO, "--labels", "x" * 100_000], ("unknown object 'xxxx",)),
    (
        [*SAMPLE_INTO, "--labels", ", ".join(["red sphere"] * 20_000)],
        ("repeated object 'red sphere' in --labels",),
    ),
    ([*SAMPLE_INTO, "--labels-file", "{huge}"], ("unknown object 'xxxx", "huge.json")),
    ([*SAMPLE_INTO, "--labels", "red sphere", "--sampler", "x" * 100_000], ("'--sampler': 'xxxx",)),
    # evaluator train on fewer images than a batch
    ([*EVAL_TRAIN], ("--batch-size 128", "9 images")),
    # distill --resume on a training run
    (["distill", "--out", "{train_run}", "--resume"], ("train-run", "not a fastddpm distillation config")),
    # distill --resume: the run's config.json decides the rest
    ([*DISTILL, "--resume"], ("--model, --data", "cannot be given with --resume")),
]


@pytest.mark.parametrize(
    "args, fragments", BEFORE_WORK, ids=[f"{a[0]} {a[-2]} {a[-1]}"[:50] for a, _ in BEFORE_WORK]
)
def test_bad_input_is_refused_before_any_work(tmp_path, inputs, args, fragments):
    out = tmp_path / "out"
    before = snapshot(inputs["student"].parent)
    code, text = run(*(arg.format(**inputs, out=out) for arg in args))
    assert_refused(code, text, *fragments)
    assert len(text) < 1000, "user text is quoted capped, and once"
    assert not out.exists()
    assert snapshot(inputs["student"].parent) == before


@pytest.mark.slow
def test_bench_warns_of_label_sets_with_more_objects_than_the_model_saw(tmp_path, inputs):
    args = [*BENCH_TINY, "--labels-file", "{four}"]
    code, text = run(*(arg.format(**inputs, out=tmp_path / "out") for arg in args))
    assert code == 0, text
    assert "warning: a condition names 4 objects" in " ".join(text.split()), text
