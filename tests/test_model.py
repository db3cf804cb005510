import pytest
import torch

from conftest import TINY_MODEL, make_tiny_model
from fastddpm.conditions import CLASS_INDEX, COLORS
from fastddpm.errors import UsageError
from fastddpm.configs import DiffusionConfig, ModelConfig
from fastddpm.model import ConditionalUNet, EpsilonModel, load_model
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
