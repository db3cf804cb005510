import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import TINY_MODEL, make_tiny_model
from fastddpm.card import RenderInfo
from fastddpm.conditions import CLASS_INDEX, COLORS
from fastddpm.errors import UsageError
from fastddpm.configs import DiffusionConfig, ModelConfig
from fastddpm.model import ConditionalUNet, EpsilonModel, ModelCard, load_card, load_model
from fastddpm.schedule import NoiseSchedule


class Zero(torch.nn.Module):
    def forward(self, x, t, cond):
        return torch.zeros_like(x)


def test_shapes_and_the_null_condition():
    torch.manual_seed(0)
    net = ConditionalUNet(ModelConfig(**TINY_MODEL)).eval()
    x, t = torch.randn(3, 3, 64, 64), torch.tensor([0, 500, 999])
    cond = torch.zeros(3, 24)
    cond[1, 4] = 1
    with torch.no_grad():
        out = net(x, t, cond)
        assert out.shape == x.shape
        net.null_embed.add_(1.0)  # only the null rows (0 and 2) may change
        changed = (net(x, t, cond) - out).abs().flatten(1).amax(1)
    assert changed[0] > 0 and changed[2] > 0 and changed[1] == 0


def test_tokens_see_only_the_objects_present():
    torch.manual_seed(0)
    net = ConditionalUNet(ModelConfig(**TINY_MODEL, conditioning="tokens")).eval()
    x, t = torch.randn(2, 3, 64, 64), torch.tensor([300, 300])
    cond = torch.zeros(2, 24)
    cond[1, CLASS_INDEX["red sphere"]] = 1
    with torch.no_grad():
        out = net(x, t, cond)
        net.tokens.color[COLORS.index("yellow")].add_(1.0)  # no yellow object: nothing may change
        assert torch.equal(net(x, t, cond), out)
        net.tokens.color[COLORS.index("red")].add_(1.0)  # only the red sphere's row may change
        changed = (net(x, t, cond) - out).abs().flatten(1).amax(1)
    assert changed[0] == 0 and changed[1] > 0


def test_unknown_conditioning_names_the_choices():
    with pytest.raises(UsageError, match="'words' is not one of multihot, tokens"):
        ModelConfig(conditioning="words")


def test_epsilon_skip_is_the_linear_guess():
    diffusion = DiffusionConfig(skip_data_std=0.1, skip_data_mean=0.2)
    model = EpsilonModel(Zero(), diffusion)
    a = NoiseSchedule.from_config(diffusion).alphas_cumprod
    x, t = torch.randn(2, 3, 4, 4), torch.tensor([10, 900])
    expected = torch.stack(
        [(1 - a[i]).sqrt() / (a[i] * 0.01 + 1 - a[i]) * (x[j] - a[i].sqrt() * 0.2) for j, i in enumerate(t)]
    )
    assert torch.allclose(model(x, t, torch.zeros(2, 24)), expected, atol=1e-6)
    plain = EpsilonModel(Zero(), DiffusionConfig(skip_data_std=None))
    assert plain(x, t, torch.zeros(2, 24)).abs().max() == 0


def test_v_prediction_converts_to_eps():
    diffusion = DiffusionConfig(prediction="v")
    schedule = NoiseSchedule.from_config(diffusion)
    x0, noise, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([100, 700])
    x_t, v = schedule.add_noise(x0, noise, t), schedule.velocity(x0, noise, t)

    class Oracle(torch.nn.Module):
        def forward(self, x, t, cond):
            return v

    assert torch.allclose(EpsilonModel(Oracle(), diffusion)(x_t, t, None), noise, atol=1e-5)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_a_perfect_network_meets_its_training_target_and_gives_the_noise(prediction):
    diffusion = DiffusionConfig(prediction=prediction, skip_data_std=None)
    schedule = NoiseSchedule.from_config(diffusion)
    x0, noise, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([100, 700])
    x_t = schedule.add_noise(x0, noise, t)
    perfect = noise if prediction == "epsilon" else schedule.velocity(x0, noise, t)

    class Oracle(torch.nn.Module):
        def forward(self, x, t, cond):
            return perfect

    model = EpsilonModel(Oracle(), diffusion)
    assert torch.equal(model.training_output(x_t, t, None), perfect)
    assert torch.equal(model.training_target(schedule, x0, noise, t), perfect)
    assert torch.allclose(model(x_t, t, None), noise, atol=1e-5)


def test_min_snr_weight_is_the_same_x0_space_weight_in_both_parameterisations():
    """For one wrong guess of eps, its eps-space error weighted as an eps model, its v-space error weighted as a
    v model, and min(SNR, gamma) times its x_0 error are one number."""
    schedule = NoiseSchedule.from_config(DiffusionConfig())
    g = torch.Generator().manual_seed(0)
    x0, noise, guess = (torch.randn(3, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([50, 400, 900])
    a = schedule.alphas_cumprod[t].double().view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    x0_guess = (x_t - (1 - a).sqrt() * guess) / a.sqrt()
    v, v_guess = (a.sqrt() * e - (1 - a).sqrt() * x for e, x in ((noise, x0), (guess, x0_guess)))
    snr = (a / (1 - a)).flatten()
    per_image = {  # squared error of each parameterisation, per image
        "epsilon": (guess - noise).pow(2).mean(dim=(1, 2, 3)),
        "v": (v_guess - v).pow(2).mean(dim=(1, 2, 3)),
    }
    x0_space = snr.clamp(max=5.0) * (x0_guess - x0).pow(2).mean(dim=(1, 2, 3))
    for prediction, error in per_image.items():
        weight = EpsilonModel(Zero(), DiffusionConfig(prediction=prediction)).min_snr_weight(snr, 5.0)
        assert torch.allclose(weight * error, x0_space, rtol=1e-9), prediction


def test_save_load_round_trip_and_bad_files(tmp_path):
    folder = make_tiny_model(tmp_path / "m")
    net, card = load_model(folder)
    assert card.model == ModelConfig(**TINY_MODEL)
    tokens_folder = make_tiny_model(tmp_path / "tokens", conditioning="tokens")
    assert load_model(tokens_folder)[1].model.conditioning == "tokens"
    (folder / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(UsageError, match="does not match"):
        load_model(folder)
    with pytest.raises(UsageError, match="is not a model folder"):
        load_model(tmp_path / "missing")


def test_the_shipped_card_reads_typed_and_writes_back_byte_for_byte():
    text = (Path(__file__).resolve().parents[1] / "checkpoints" / "default" / "config.json").read_text()
    card = ModelCard.from_json(text)
    assert card.info.steps == 5533 and card.info.train_seconds == 4800.5 and card.info.student is None
    assert card.model.refine_channels == 32 and card.info.init_sha256.startswith("5a5c99f3969f")
    assert card.info.render == RenderInfo(seed=0, max_objects=3, labels_sha256=None, device="cpu", renderer=3)
    assert card.to_json() + "\n" == text


def test_keys_unknown_to_this_version_are_kept_in_the_info_sections(tiny_model, tmp_path):
    folder = shutil.copytree(tiny_model, tmp_path / "m")
    data = json.loads((folder / "config.json").read_text())
    data["info"]["gpu_hours"] = 1.5
    data["info"]["render"]["scene_style"] = {"lights": 3}
    data["info"]["student"] = {"steps": 2, "sampler": "ddim", "guidance_folded": 2.0, "schedule": "x"}
    (folder / "config.json").write_text(json.dumps(data))
    card = load_card(folder)
    assert card.info.extra == {"gpu_hours": 1.5} and card.info.student.extra == {"schedule": "x"}
    assert json.loads(card.to_json()) == data


def _set(path: str, value):
    """A change to a card: set the value at a dotted path (DELETE removes the key)."""

    def change(card: dict) -> dict:
        *parents, last = path.split(".")
        section = card
        for name in parents:
            section = section[name]
        if value is DELETE:
            del section[last]
        else:
            section[last] = value
        return card

    return change


DELETE = object()
BROKEN_CARDS = [  # (how the card is broken, what the one-line message says after the file name)
    (_set("diffusion.timesteps", 0), "diffusion: timesteps 0 is out of range: at least 1"),
    (_set("diffusion.timesteps", "1000"), "diffusion.timesteps is '1000', not an integer"),
    (_set("diffusion.timesteps", 1000.0), "diffusion.timesteps is 1000.0, not an integer"),
    (_set("diffusion.skip_data_std", "0.1"), "diffusion.skip_data_std is '0.1', not a number or null"),
    (_set("diffusion.schedule", "sigmoid"), "diffusion: schedule 'sigmoid' is not one of linear, cosine"),
    (_set("diffusion", DELETE), "diffusion is missing"),
    (_set("model.patch_size", DELETE), "model.patch_size is missing"),
    (
        _set("model.block_channels", [32, "32"]),
        'model.block_channels is [32, "32"], not a list, each an integer',
    ),
    (_set("model.layers", 2), "model.layers is not a field of model (known: image_size, "),
    (_set("model.a b", 1), "model.'a b' is not a field of model (known: image_size, "),
    (_set("model.conditioning", "words"), "model: --conditioning 'words' is not one of multihot, tokens"),
    (_set("sampling", {"guidance": True, "chosen_on": "x"}), "sampling.guidance is true, not a number"),
    (_set("sampling", {"guidance": 2.0}), "sampling.chosen_on is missing"),
    (_set("extras", {}), "extras is not a field of a card (known: model, diffusion, info, sampling)"),
    (_set("info", []), "info is [], not a JSON object"),
    (_set("info.steps", "many"), "info.steps is 'many', not an integer or null"),
    (_set("info.render.seed", [0]), "info.render.seed is [0], not an integer or null"),
    (_set("info.student", {"steps": 2, "guidance_folded": 2.0}), "info.student.sampler is missing"),
    (
        _set("info.student", {"steps": 2, "sampler": "euler", "guidance_folded": 2.0}),
        "info.student: sampler 'euler' is not one of ddpm, ddim, dpmpp, unipc",
    ),
    (
        _set("info.student", {"steps": 0, "sampler": "ddim", "guidance_folded": 2.0}),
        "info.student: steps 0 is out of range: at least 1",
    ),
    (lambda card: [card], "the file is [{"),
]


@pytest.mark.parametrize(("change", "message"), BROKEN_CARDS)
def test_a_broken_card_is_refused_in_one_line_naming_the_file_and_the_field(
    tiny_model, tmp_path, change, message
):
    folder = shutil.copytree(tiny_model, tmp_path / "m")
    config = folder / "config.json"
    config.write_text(json.dumps(change(json.loads(config.read_text()))))
    with pytest.raises(UsageError) as refused:
        load_card(folder)
    assert str(refused.value).startswith(f"{config} is not a fastddpm model config: {message}")
    assert "\n" not in str(refused.value)


def test_a_card_nested_too_deeply_is_refused_in_one_line(tiny_model, tmp_path):
    folder = shutil.copytree(tiny_model, tmp_path / "m")
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UsageError, match="is not a fastddpm model config: nested too deeply to read"):
        load_card(folder)
