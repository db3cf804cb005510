import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_MODEL
from fastddpm.training.checkpoint import CHECKPOINT_NAME
from fastddpm.errors import UsageError
from fastddpm.training.loss import diffusion_loss, drop_conditions
from fastddpm.configs import DiffusionConfig, ModelConfig, TrainConfig
from fastddpm.model import ConditionalUNet, EpsilonModel
from fastddpm.schedule import NoiseSchedule, linear_betas
from fastddpm.training.loop import ema_update, random_hflip, train
from fastddpm.training.init_model import load_init_weights
from fastddpm.training.setup import amp_dtype


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    base = dict(
        data=str(data),
        out=str(out),
        epochs=4,
        batch_size=4,
        lr=1e-3,
        warmup_steps=2,
        eval_minutes=0,
        log_every=2,
        device="cpu",
        model=ModelConfig(**TINY_MODEL),
    )
    return TrainConfig(**{**base, **overrides})


def subprocess_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def tiny_train_command(data: Path, out: Path, *args: str) -> list[str]:
    """`-m fastddpm train` of a tiny model on the CPU, without quick evaluations."""
    tiny = ["--channels", "32,32", "--attention", "1", "--eval-minutes", "0", "--device", "cpu"]
    return ["-m", "fastddpm", "train", "--data", str(data), "--out", str(out), *tiny, *args]


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    net = ConditionalUNet(ModelConfig(**TINY_MODEL))
    schedule = NoiseSchedule(linear_betas())
    x0 = torch.rand(4, 3, 64, 64) * 2 - 1
    cond = torch.eye(24)[:4]
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)

    model = EpsilonModel(net, DiffusionConfig())

    def loss() -> torch.Tensor:  # same t, noise and dropout every call
        return diffusion_loss(model, schedule, x0, cond, generator=torch.Generator().manual_seed(1))

    first = loss().item()
    for _ in range(15):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.8 * first


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("gamma, floor", [(5.0, 0.0), (None, 0.0), (5.0, 0.3)])
def test_the_loss_is_the_min_snr_weighted_error_in_the_models_parameterisation(prediction, gamma, floor):
    """On a fixed batch, the loss equals the formula written out here: the network's raw v against
    sqrt(a) eps - sqrt(1 - a) x0 weighted min(SNR, 5) / (SNR + 1), or its eps with the skip against the noise
    weighted min(SNR, 5) / SNR, each weight at least `floor`; the draws (t, noise, then condition dropout) come
    from the same generator."""
    torch.manual_seed(0)
    net = ConditionalUNet(ModelConfig(**TINY_MODEL))
    diffusion = DiffusionConfig(prediction=prediction, skip_data_std=0.3, skip_data_mean=0.1)
    schedule = NoiseSchedule.from_config(diffusion)
    x0, cond = torch.rand(6, 3, 64, 64) * 2 - 1, torch.eye(24)[:6]
    with torch.no_grad():
        got = diffusion_loss(
            EpsilonModel(net, diffusion),
            schedule,
            x0,
            cond,
            cond_drop=0.5,
            min_snr_gamma=gamma,
            min_snr_floor=floor,
            generator=torch.Generator().manual_seed(7),
        )
        g = torch.Generator().manual_seed(7)
        t = torch.randint(0, 1000, (6,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        keep = torch.rand(6, 1, generator=g) >= 0.5
        a = schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        out = net(x_t, t, cond * keep)
        snr = (a / (1 - a)).flatten()
        if prediction == "v":
            error, weight = out - (a.sqrt() * noise - (1 - a).sqrt() * x0), snr.clamp(max=5.0) / (snr + 1)
        else:
            skip = (1 - a).sqrt() / (a * 0.3**2 + 1 - a) * (x_t - a.sqrt() * 0.1)
            error, weight = out + skip - noise, snr.clamp(max=5.0) / snr
        per_image = error.pow(2).mean(dim=(1, 2, 3))
        expected = (per_image if gamma is None else weight.clamp(min=floor) * per_image).mean()
    assert 0 < keep.sum() < 6  # both the conditional and the dropped rows are in the batch
    if floor and prediction == "v":  # the floor binds for some rows of this batch and not for others
        assert (weight < floor).any() and (weight > floor).any()
    assert torch.allclose(got, expected, rtol=1e-6, atol=0), (got, expected)


def test_resume_equals_an_uninterrupted_run(tiny_data, tmp_path):
    train(tiny_config(tiny_data, tmp_path / "straight"), max_steps=6)
    train(tiny_config(tiny_data, tmp_path / "split"), max_steps=3)
    with pytest.raises(UsageError, match="already holds a run"):
        train(tiny_config(tiny_data, tmp_path / "split"), max_steps=3)
    train(tiny_config(tiny_data, tmp_path / "split"), resume=True, max_steps=3)
    straight = load_file(tmp_path / "straight" / CHECKPOINT_NAME)
    split = load_file(tmp_path / "split" / CHECKPOINT_NAME)
    assert straight.keys() == split.keys()
    for key in straight:
        if not key.startswith("rng/"):
            assert torch.equal(straight[key], split[key]), key
    assert (tmp_path / "split" / "model" / "model.safetensors").is_file()
    meta = json.loads((tmp_path / "split" / "model" / "config.json").read_text())
    assert meta["info"]["steps"] == 6 and meta["info"]["render"]["seed"] == 5


def test_a_broken_render_manifest_is_refused_before_training(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    manifest = json.loads((data / "render.json").read_text())
    (data / "render.json").write_text(json.dumps({**manifest, "max_objects": "three"}))
    with pytest.raises(UsageError) as refused:
        train(tiny_config(data, tmp_path / "run"), max_steps=1)
    assert str(refused.value) == (
        f"{data / 'render.json'} is not a fastddpm render manifest: max_objects is 'three', not an integer or null"
    )
    assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()


def test_init_starts_from_the_model_folders_weights_and_architecture(tiny_data, tiny_model, tmp_path):
    from fastddpm.model import checkpoint_sha256, load_card, load_model

    wide = ModelConfig(**{**TINY_MODEL, "block_channels": (64, 64)})  # replaced by the init's architecture
    train(tiny_config(tiny_data, tmp_path / "ft", init=str(tiny_model), model=wide), max_steps=0)
    train(tiny_config(tiny_data, tmp_path / "scratch", seed=1), max_steps=0)
    init_net, init_card = load_model(tiny_model)
    for name, want_equal in (("ft", True), ("scratch", False)):
        net, card = load_model(tmp_path / name / "model")
        assert card.model == init_card.model
        equal = [
            torch.allclose(a, b.half().float())
            for a, b in zip(net.parameters(), init_net.parameters(), strict=True)
        ]
        assert all(equal) if want_equal else not all(equal), name
    info = load_card(tmp_path / "ft" / "model").info
    assert (info.init, info.init_sha256) == (str(tiny_model), checkpoint_sha256(tiny_model))
    assert load_card(tmp_path / "scratch" / "model").info.init is None


def test_refine_with_init_grafts_a_head_that_starts_from_the_init_models_output(
    tiny_data, tiny_model, tmp_path
):
    from fastddpm.model import load_model

    refined = ModelConfig(**{**TINY_MODEL, "refine_channels": 8})
    train(tiny_config(tiny_data, tmp_path / "start", init=str(tiny_model), model=refined), max_steps=0)
    train(tiny_config(tiny_data, tmp_path / "trained", init=str(tiny_model), model=refined), max_steps=4)
    init_net, _ = load_model(tiny_model)
    start, card = load_model(tmp_path / "start" / "model")
    trained, _ = load_model(tmp_path / "trained" / "model")
    assert card.model == dataclasses.replace(init_net.config, refine_channels=8)
    x, t, cond = torch.randn(3, 3, 64, 64), torch.tensor([0, 9, 500]), torch.eye(24)[:3]
    with torch.no_grad():
        want = init_net(x, t, cond)
        assert torch.allclose(start(x, t, cond), want, atol=1e-3)
        assert not torch.allclose(trained(x, t, cond), want, atol=1e-3)
    assert trained.refine.layers[-1].weight.abs().sum() > 0  # the head's zero start is left by training


def test_grow_attention_adds_blocks_that_start_as_the_identity(tiny_data, tiny_model, tmp_path):
    from fastddpm.model import load_model

    train(tiny_config(tiny_data, tmp_path / "start", init=str(tiny_model), grow_attention=(0,)), max_steps=0)
    train(
        tiny_config(tiny_data, tmp_path / "trained", init=str(tiny_model), grow_attention=(0,)), max_steps=4
    )
    init_net, _ = load_model(tiny_model)
    start, card = load_model(tmp_path / "start" / "model")
    trained, _ = load_model(tmp_path / "trained" / "model")
    assert card.model == dataclasses.replace(init_net.config, attention_levels=(0, 1))
    x, t, cond = torch.randn(3, 3, 64, 64), torch.tensor([0, 9, 500]), torch.eye(24)[:3]
    with torch.no_grad():
        want = init_net(x, t, cond)
        assert torch.allclose(start(x, t, cond), want, atol=1e-3)  # as the grafted head's test: a saved run
        assert not torch.allclose(trained(x, t, cond), want, atol=1e-3)
        grown = ConditionalUNet(card.model).eval()
        load_init_weights(grown, init_net)  # the copy itself is exact but for float rounding
        assert torch.allclose(grown(x, t, cond), want, atol=1e-5)
    new_block = trained.unet.down_blocks[0].attentions[0].to_out[0]
    assert new_block.weight.abs().sum() > 0  # its zero start is left by training


@pytest.mark.parametrize(
    ("grow", "init", "message"),
    [
        ((1,), True, "--grow-attention 1: --init {init!r} already has attention at level 1"),
        ((2,), True, "--grow-attention 2 is out of range: the --init model has levels 0 to 1"),
        ((0,), False, "--grow-attention adds attention to an --init model: give --init"),
    ],
)
def test_grow_attention_is_refused_where_it_cannot_grow(tiny_data, tiny_model, tmp_path, grow, init, message):
    config = tiny_config(
        tiny_data, tmp_path / "run", grow_attention=grow, init=str(tiny_model) if init else None
    )
    with pytest.raises(UsageError) as refused:
        train(config, max_steps=0)
    assert str(refused.value) == message.format(init=str(tiny_model))
    assert not (tmp_path / "run").exists()


def test_freeze_body_trains_the_refinement_head_alone(tiny_data, tiny_model, tmp_path):
    from fastddpm.model import load_model

    refined = ModelConfig(**{**TINY_MODEL, "refine_channels": 8})
    config = tiny_config(tiny_data, tmp_path / "head", init=str(tiny_model), model=refined, freeze_body=True)
    train(dataclasses.replace(config, ema=False), max_steps=4)
    init = load_model(tiny_model)[0].state_dict()
    trained = load_model(tmp_path / "head" / "model")[0]
    body = {name: w for name, w in trained.state_dict().items() if not name.startswith("refine.")}
    assert body.keys() == init.keys()
    assert all(torch.equal(w, init[name].half().float()) for name, w in body.items())  # saved in fp16
    assert trained.refine.layers[-1].weight.abs().sum() > 0


def test_refine_cannot_resize_the_head_an_init_model_has(tiny_data, tmp_path):
    refined = ModelConfig(**{**TINY_MODEL, "refine_channels": 8})
    train(tiny_config(tiny_data, tmp_path / "a", model=refined), max_steps=0)
    other = ModelConfig(**{**TINY_MODEL, "refine_channels": 16})
    init = str(tmp_path / "a" / "model")
    with pytest.raises(UsageError) as refused:
        train(tiny_config(tiny_data, tmp_path / "b", init=init, model=other), max_steps=0)
    assert str(refused.value) == f"--refine 16: --init {init!r} already has a refinement head of 8 channels"
    assert not (tmp_path / "b").exists()
    train(tiny_config(tiny_data, tmp_path / "c", init=init), max_steps=0)  # no --refine: the init's head
    assert json.loads((tmp_path / "c" / "model" / "config.json").read_text())["model"]["refine_channels"] == 8


def test_random_hflip_mirrors_about_half_the_images_and_keeps_the_others():
    images = torch.randint(0, 256, (2000, 3, 4, 5), dtype=torch.uint8)
    out = random_hflip(images, torch.Generator().manual_seed(0))
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert (mirrored ^ kept).all()  # each image whole, one way or the other (none symmetric by chance)
    assert 0.45 < mirrored.float().mean().item() < 0.55
    assert out.equal(random_hflip(images, torch.Generator().manual_seed(0)))  # the generator decides


def test_hflip_option_is_saved_and_changes_only_the_runs_that_ask(tiny_data, tmp_path):
    from typer.testing import CliRunner

    from fastddpm.cli import app

    out = tmp_path / "cli"
    args = ["train", "--data", tiny_data, "--out", out, "--channels", "32,32", "--attention", "1"]
    args += ["--eval-minutes", "0", "--device", "cpu", "--epochs", "0.5", "--batch-size", "2", "--hflip"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["hflip"] is True
    train(tiny_config(tiny_data, tmp_path / "plain"), max_steps=3)
    train(tiny_config(tiny_data, tmp_path / "plain2", hflip=False), max_steps=3)
    train(tiny_config(tiny_data, tmp_path / "flip", hflip=True), max_steps=3)
    plain, plain2, flip = (load_file(tmp_path / n / CHECKPOINT_NAME) for n in ("plain", "plain2", "flip"))
    weights = [k for k in plain if not k.startswith("rng/")]
    assert all(torch.equal(plain[k], plain2[k]) for k in weights)
    assert not all(torch.equal(plain[k], flip[k]) for k in weights)


def cli_train(*args) -> None:
    from typer.testing import CliRunner

    from fastddpm.cli import app

    result = CliRunner().invoke(app, ["train", *(str(a) for a in args)])
    assert result.exit_code == 0, result.output


def test_resume_alone_continues_a_run_of_another_recipe_and_of_a_removed_init(
    tiny_data, tiny_model, tmp_path
):
    init = tmp_path / "init"
    shutil.copytree(tiny_model, init)
    out = tmp_path / "run"
    common = ["--data", tiny_data, "--out", out, "--device", "cpu", "--batch-size", "2"]
    cli_train(
        *common, "--init", init, "--refine", "8", "--min-snr-gamma", "0", "--lr", "3e-4", "--epochs", "1"
    )
    first = json.loads((out / "config.json").read_text())
    steps = json.loads((out / "model" / "config.json").read_text())["info"]["steps"]
    shutil.rmtree(init)  # a resume takes the weights from the checkpoint, not from --init
    cli_train("--data", tiny_data, "--out", out, "--resume", "--epochs", "2")
    second = json.loads((out / "config.json").read_text())
    assert second == {**first, "epochs": 2.0}  # the recipe and the grafted head carried over
    assert first["model"]["refine_channels"] == 8 and first["min_snr_gamma"] is None
    assert steps < json.loads((out / "model" / "config.json").read_text())["info"]["steps"] <= 2 * steps


def test_ema_update():
    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in ema.parameters()]
    ema_update(ema, model, decay=0.9)
    for e, b, m in zip(ema.parameters(), before, model.parameters(), strict=True):
        assert torch.allclose(e, 0.9 * b + 0.1 * m)


def test_ema_update_leaves_frozen_parameters_alone():
    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    bias, weight = ema.bias.detach().clone(), ema.weight.detach().clone()
    ema_update(ema, model, decay=0.9)
    assert torch.equal(ema.bias, bias) and torch.allclose(ema.weight, 0.9 * weight + 0.1 * model.weight)


@pytest.mark.parametrize("avx512_bf16, amx", [(True, False), (False, True), (False, False)])
def test_auto_autocast_on_a_cpu_is_bf16_only_where_the_cpu_has_native_bf16(monkeypatch, avx512_bf16, amx):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    cpu, config = torch.device("cpu"), TrainConfig(data="d", out="o")
    assert amp_dtype(config, cpu) == (torch.bfloat16 if avx512_bf16 or amx else None)
    assert amp_dtype(dataclasses.replace(config, amp="off"), cpu) is None
    assert amp_dtype(dataclasses.replace(config, amp="bf16"), cpu) == torch.bfloat16


def test_condition_dropout_rate():
    cond = torch.ones(20000, 24)
    dropped = drop_conditions(cond, 0.1, torch.Generator().manual_seed(0))
    null = (dropped.sum(1) == 0).float().mean().item()
    assert 0.09 < null < 0.11
    assert ((dropped.sum(1) == 0) | (dropped.sum(1) == 24)).all()  # rows are kept or nulled whole
    assert drop_conditions(cond, 0.0).equal(cond)


def test_corrupt_and_foreign_checkpoints(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(tiny_data, out), max_steps=1)
    (out / CHECKPOINT_NAME).write_bytes(b"\x00" * 100)
    with pytest.raises(UsageError, match="not a readable fastddpm checkpoint"):
        train(tiny_config(tiny_data, out), resume=True, max_steps=1)
    other = dataclasses.replace(
        tiny_config(tiny_data, out), model=ModelConfig(**{**TINY_MODEL, "block_channels": (32, 64)})
    )
    with pytest.raises(UsageError, match="was trained with model"):
        train(other, resume=True, max_steps=1)
    with pytest.raises(UsageError, match="no config.json"):
        train(tiny_config(tiny_data, tmp_path / "empty"), resume=True)


def test_missing_or_foreign_data_dir(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        train(tiny_config(tmp_path / "nope", tmp_path / "run"))
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.slow
def test_ddp_with_two_gloo_ranks(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    cmd += tiny_train_command(tiny_data, out, "--epochs", "4", "--batch-size", "2")
    env = subprocess_env()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(1 for e in events if e.get("event") == "start") == 1  # rank 0 alone logs and checkpoints
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.safetensors",
        "config.json",
        "metrics.jsonl",
        "model",
    ]
    info = json.loads((out / "model" / "config.json").read_text())["info"]
    assert (
        info["world_size"] == 2 and info["steps"] == 9
    )  # ceil(4 epochs * 9 images / (2 per rank * 2 ranks))


def test_resume_continues_in_the_folder_given_even_when_copied(tiny_data, tmp_path):
    import shutil

    original = tmp_path / "original"
    train(tiny_config(tiny_data, original), max_steps=2)
    before = {p.name: p.read_bytes() for p in (original / "model").iterdir()}
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    train(tiny_config(tiny_data, copy), resume=True, max_steps=2)
    assert {p.name: p.read_bytes() for p in (original / "model").iterdir()} == before  # untouched
    assert json.loads((copy / "model" / "config.json").read_text())["info"]["steps"] == 4
    assert json.loads((copy / "config.json").read_text())["out"] == str(copy)


@pytest.mark.slow
def test_sigterm_saves_and_exits_143_within_seconds(tiny_data, tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    env = subprocess_env()
    cmd = [sys.executable, *tiny_train_command(tiny_data, out, "--epochs", "100000", "--batch-size", "2")]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not (out / "metrics.jsonl").is_file() or len((out / "metrics.jsonl").read_text().splitlines()) < 2:
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.2)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 143, output
    assert time.monotonic() - sent < 10, "the stop took too long"
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "stop" and events[-1]["signal"] == "SIGTERM"
    assert f"stopped at step {events[-1]['step']}; continue with --resume" in " ".join(output.split())
    assert (out / CHECKPOINT_NAME).is_file() and (out / "model" / "model.safetensors").is_file()


def test_a_preset_sets_its_fields_and_explicit_options_win():
    from fastddpm.presets import apply_preset
    from fastddpm.errors import UsageError

    base = TrainConfig(data="d", out="o", lr=1e-3)
    gpu = apply_preset(base, "gpu", explicit=frozenset({"lr", "model.patch_size"}))
    assert gpu.batch_size == 256 and gpu.model.block_channels == (64, 128, 256, 256)
    assert gpu.model.refine_channels == 32 and gpu.min_snr_floor == 0.3
    assert gpu.lr == 1e-3 and gpu.model.patch_size == base.model.patch_size  # given on the command line
    assert apply_preset(base, "cpu") == base
    uniform = apply_preset(
        dataclasses.replace(base, min_snr_gamma=None), "gpu", explicit=frozenset({"min_snr_gamma"})
    )
    assert uniform.min_snr_gamma is None and uniform.min_snr_floor == 0.0 and uniform.batch_size == 256
    with pytest.raises(UsageError, match="--preset 'tpu' is not one of cpu, gpu"):
        apply_preset(base, "tpu")
