"""A model's card names its default guidance (card.sampling); bench/guidance_sweep.py chooses it on validation
label sets and records it there."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastddpm.atomic import file_sha256
from fastddpm.configs import SamplingDefaults
from fastddpm.defaults import DEFAULT_GUIDANCE
from fastddpm.errors import UsageError
from fastddpm.sampling.batch import model_defaults, model_interval, model_spacing
from fastddpm.model import load_card

SWEEP = Path(__file__).resolve().parents[1] / "bench" / "guidance_sweep.py"


def write_sampling(model: Path, sampling: dict | None) -> None:
    config = json.loads((model / "config.json").read_text())
    config.pop("sampling", None)
    if sampling is not None:
        config["sampling"] = sampling
    (model / "config.json").write_text(json.dumps(config))


def test_the_card_guidance_is_the_default_unless_one_is_given(tiny_model, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    write_sampling(model, None)  # a card written before the section existed
    assert model_defaults(load_card(model), None, None, None)[2] == DEFAULT_GUIDANCE
    write_sampling(model, {"guidance": 3.5, "chosen_on": "a test"})
    card = load_card(model)
    assert card.sampling == SamplingDefaults(3.5, "a test")
    assert model_defaults(card, "dpmpp", 10, None) == ("dpmpp", 10, 3.5)
    assert model_defaults(card, "dpmpp", 10, 1.0)[2] == 1.0
    assert type(card).from_json(card.to_json()) == card


def test_the_card_sampler_and_its_steps_are_the_default_unless_given(tiny_model, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    assert model_defaults(load_card(model), None, None, None)[:2] == ("ddim", 50)  # none named
    write_sampling(model, {"guidance": 3.0, "chosen_on": "a test", "sampler": "unipc", "steps": 3})
    card = load_card(model)
    assert model_defaults(card, None, None, None) == ("unipc", 3, 3.0)
    assert model_defaults(card, "unipc", 5, None)[:2] == ("unipc", 5)
    assert model_defaults(card, "ddim", None, None)[:2] == ("ddim", 50)  # the card's steps are its sampler's
    assert type(card).from_json(card.to_json()) == card
    from fastddpm.cli.bench import model_grid

    assert model_grid(card, None, None) == (("unipc",), (3,))
    assert model_grid(card, "ddim,unipc", None)[1] == (50,)
    assert model_grid(card, None, "2,4") == (("unipc",), (2, 4))


def test_sample_uses_the_card_sampler_and_steps(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from fastddpm.cli import app

    model = shutil.copytree(tiny_model, tmp_path / "model")
    write_sampling(model, {"guidance": 3.0, "chosen_on": "a test", "sampler": "unipc", "steps": 3})
    args = ["sample", "--labels", "red sphere", "--model", str(model), "--out", str(tmp_path / "s")]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    settings = json.loads((tmp_path / "s" / "sample.json").read_text())["settings"]
    assert (settings["sampler"], settings["steps"], settings["guidance"]) == ("unipc", 3, 3.0)


@pytest.mark.parametrize(
    "named",
    [{"sampler": "euler"}, {"steps": 10}, {"sampler": "ddim", "steps": 0}, {"sampler": "ddim", "steps": "10"}],
)
def test_a_card_with_a_bad_sampler_or_steps_is_refused_naming_the_file(tiny_model, tmp_path, named):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    write_sampling(model, {"guidance": 3.0, **named})
    with pytest.raises(UsageError, match="config.json"):
        load_card(model)


def test_the_card_guidance_interval_is_the_default_unless_one_is_given(tiny_model, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    assert model_interval(load_card(model), None) is None  # no interval named: every step
    write_sampling(model, {"guidance": 3.0, "chosen_on": "a test", "guidance_interval": [0, 450]})
    card = load_card(model)
    assert card.sampling.guidance_interval == (0, 450)
    assert model_interval(card, None) == (0, 450)
    assert model_interval(card, "all") is None
    assert model_interval(card, "100-900") == model_interval(card, (100, 900)) == (100, 900)
    assert type(card).from_json(card.to_json()) == card


def test_the_card_spacing_is_the_default_unless_one_is_given(tiny_model, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    assert model_spacing(load_card(model), None) is None  # no spacing named: each sampler's own grid
    write_sampling(model, {"guidance": 3.0, "chosen_on": "a test", "spacing": "logsnr"})
    card = load_card(model)
    assert model_spacing(card, None) == "logsnr"
    assert model_spacing(card, "own") is None
    assert model_spacing(card, "karras") == "karras"
    assert type(card).from_json(card.to_json()) == card
    write_sampling(model, {"guidance": 3.0, "spacing": "cosine"})
    with pytest.raises(UsageError, match="config.json"):
        load_card(model)


@pytest.mark.parametrize("interval", [[450, 0], [0], [0, 1.5], "0-450"])
def test_a_card_with_a_bad_guidance_interval_is_refused_naming_the_file(tiny_model, tmp_path, interval):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    write_sampling(model, {"guidance": 3.0, "guidance_interval": interval})
    with pytest.raises(UsageError, match="config.json"):
        load_card(model)


@pytest.mark.parametrize("guidance", [-1, "2", None, float("nan")])
def test_a_card_with_a_bad_guidance_is_refused_naming_the_file(tiny_model, tmp_path, guidance):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    write_sampling(model, {"guidance": guidance})
    with pytest.raises(UsageError, match="config.json"):
        load_card(model)


@pytest.mark.slow
def test_the_sweep_records_its_validation_choice_in_the_card(tiny_model, tiny_evaluator, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    write_sampling(model, {"guidance": 2.0, "chosen_on": "a test", "sampler": "unipc", "steps": 3})
    weights = file_sha256(model / "model.safetensors")
    args = ["--model", model, "--evaluator", tiny_evaluator, "--scales", "1,3", "--intervals", "all,0-1"]
    args += ["--spacings", "own,karras", "--sampler", "ddim"]
    args += ["--steps", "2", "--validation-seeds", "5", "--out", tmp_path / "results", "--record"]
    done = subprocess.run([sys.executable, SWEEP, *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (result,) = (tmp_path / "results").glob("guidance_sweep-*.json")
    record = json.loads(result.read_text())
    assert {(row["guidance"], row["interval"], row["spacing"]) for row in record["rows"]} == {
        (scale, interval, spacing)
        for scale in (1.0, 3.0)
        for interval in ("all", "0-1")
        for spacing in (None, "karras")
    }
    assert all(len(row["cells"]) == 2 for row in record["rows"])  # val and new_val of one draw, DDIM-2
    card = load_card(model)
    assert card.sampling.guidance == record["best"]["guidance"]
    best_interval = record["best"]["interval"]
    assert card.sampling.guidance_interval == (None if best_interval == "all" else (0, 1))
    assert card.sampling.spacing == record["best"]["spacing"]
    assert result.name in card.sampling.chosen_on
    assert (card.sampling.sampler, card.sampling.steps) == ("unipc", 3)  # what the sweep did not choose stays
    assert file_sha256(model / "model.safetensors") == weights
    assert dataclasses.replace(card, sampling=load_card(tiny_model).sampling) == load_card(tiny_model)


@pytest.mark.slow
@pytest.mark.parametrize(
    "bad",
    [
        ["--scales", "1,x"],
        ["--scales", "-1"],
        ["--steps", "0"],
        ["--sampler", "euler"],
        ["--model", "nowhere"],
        ["--intervals", "600-200"],
        ["--intervals", "all,all"],
        ["--intervals", "0-1000"],
        ["--intervals", "low"],
        ["--spacings", "own,own"],
        ["--spacings", "own,cosine"],
        ["--etas", "0,0"],
        ["--etas", "-1"],
        ["--etas", "x"],
        ["--etas", "0.5"],  # beside the default sampler dpmpp, which takes no eta
        ["--etas", "0,0.5", "--sampler", "ddim", "--record"],
    ],
)
def test_the_sweep_refuses_bad_values_before_any_work(tmp_path, bad):
    done = subprocess.run(
        [sys.executable, SWEEP, *bad, "--out", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()[-1]) > 0 and not (tmp_path / "out").exists()


def test_the_sweep_samples_ddim_at_each_eta_it_is_given(tiny_model, tiny_evaluator, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SWEEP.parent))
    import guidance_sweep

    sampled = []

    def fake_score_splits(backend, schedule, splits, settings, seeds, evaluator, device):
        sampled.append((settings.sampler, settings.eta))
        return {split: [settings.eta] * len(seeds) for split in splits}

    monkeypatch.setattr(guidance_sweep, "score_splits", fake_score_splits)
    args = ["--model", tiny_model, "--evaluator", tiny_evaluator, "--scales", "2", "--etas", "0,0.5,1"]
    args += ["--sampler", "ddim", "--steps", "2", "--validation-seeds", "5", "--out", tmp_path / "results"]
    monkeypatch.setattr(sys, "argv", ["guidance_sweep.py", *map(str, args)])
    guidance_sweep.main()
    assert sampled == [("ddim", 0.0), ("ddim", 0.5), ("ddim", 1.0)]
    (result,) = (tmp_path / "results").glob("guidance_sweep-*.json")
    record = json.loads(result.read_text())
    assert [row["eta"] for row in record["rows"]] == [0.0, 0.5, 1.0] and record["best"]["eta"] == 1.0
