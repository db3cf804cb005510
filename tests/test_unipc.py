"""UniPC against diffusers' UniPCMultistepScheduler (the oracle), driven by the same eps function.

Driving diffusers needs nothing special: step(eps, t, x) is called with the x it returned at the previous step;
the scheduler keeps its model outputs and applies the corrector inside the next step(). What step() returns, and
what our callback sees, is the predictor's output.

Exact comparison (float64): diffusers computes its sigmas in float32 and derives alpha_t, sigma_t from them, while
we use sqrt(alpha-bar) in double precision. At t = 999 of the cosine schedule alpha-bar is 1e-8, so
x_0 = (x - sigma_t eps) / alpha_t amplifies a 1e-7 rounding of sigma_t 1e4 times. To compare the algorithms,
`oracle(..., exact=True)` gives diffusers float64 sigmas after set_timesteps and float64 samples; the float32
test against stock diffusers uses the linear schedule, where the rounding stays below the tolerance.
"""

import math

import pytest
import torch
from diffusers import UniPCMultistepScheduler

from fastddpm.configs import DiffusionConfig
from fastddpm.sampling.samplers import sample_dpmpp_2m, sample_unipc
from fastddpm.schedule import NoiseSchedule, linear_betas
from test_samplers import dummy_eps, gaussian_data_eps

STEPS = [1, 2, 3, 5, 10, 20, 25]


def ours(schedule: str) -> NoiseSchedule:
    return NoiseSchedule.from_config(DiffusionConfig("linear" if schedule == "linear" else "cosine"))


def oracle(schedule, order, steps, eps_fn, x, cond, exact):
    """Every x that diffusers' step() returns, one per step; exact: float64 sigmas (module docstring)."""
    ref = UniPCMultistepScheduler(
        beta_schedule=schedule, solver_order=order, solver_type="bh2", predict_x0=True, lower_order_final=True
    )
    ref.set_timesteps(steps)
    assert ref.timesteps.tolist() == ours(schedule).timesteps(steps, "linspace")
    if exact:
        a = ref.alphas_cumprod.double()[ref.timesteps]
        ref.sigmas = torch.cat([((1 - a) / a).sqrt(), torch.zeros(1, dtype=torch.float64)])
    xs = []
    for t in ref.timesteps:
        x = ref.step(eps_fn(x, torch.full((x.shape[0],), int(t)), cond), t, x).prev_sample
        xs.append(x)
    return xs


def run(schedule, order, steps, eps_fn, x, cond):
    """Our x after every step, checking one network call per step at the run's timesteps."""
    s, calls, xs = ours(schedule), [], []
    timesteps = s.timesteps(steps, "linspace")

    def counted(x, t, c):
        calls.append(int(t[0]))
        return eps_fn(x, t, c)

    out = sample_unipc(
        counted, s, x, cond, timesteps=timesteps, order=order, callback=lambda i, y: xs.append(y)
    )
    assert calls == timesteps and len(xs) == steps and torch.equal(out, xs[-1])
    return xs


@pytest.fixture()
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 8, 8, generator=g), torch.eye(24)[:2]


@pytest.mark.parametrize("order", [2, 1])
@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("steps", STEPS)
def test_unipc_equals_diffusers_step_for_step(inputs, schedule, steps, order):
    x, cond = (v.double() for v in inputs)
    expected = oracle(schedule, order, steps, dummy_eps, x.clone(), cond, exact=True)
    got = run(schedule, order, steps, dummy_eps, x.clone(), cond)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert torch.allclose(a, b, atol=1e-8, rtol=0), (i, (a - b).abs().max())


@pytest.mark.parametrize("steps", [5, 10, 20])
def test_float32_equals_stock_diffusers(inputs, steps):
    """Unmodified diffusers, float32, linear schedule, an eps whose x_0 stays O(1) (exact eps of N(0, 0.5^2)
    data plus a small smooth term)."""
    x, cond = inputs
    a = ours("linear").alphas_cumprod

    def eps(x, t, c):
        a_t = a[t].view(-1, 1, 1, 1)
        return (1 - a_t).sqrt() * x / (0.25 * a_t + 1 - a_t) + a_t.sqrt() * dummy_eps(x, t, c)

    expected = oracle("linear", 2, steps, eps, x.clone(), cond, exact=False)
    got = run("linear", 2, steps, eps, x.clone(), cond)
    assert max((p - q).abs().max().item() for p, q in zip(got, expected, strict=True)) < 1e-4


def test_unipc_samples_the_data_law():
    """Data x_0 ~ N(0, 0.3^2) has an exact eps and an exact probability-flow solution. With 10 steps the last
    one jumps from t = 100 to sigma = 0 and returns E[x_0 | x_100], whose std (0.198) is the grid's exact answer;
    UniPC lands closer to it than DPM-Solver++(2M), and reaches the data's 0.3 by 50 steps."""
    schedule = NoiseSchedule(linear_betas())
    a = schedule.alphas_cumprod
    var = 0.3**2
    exact_eps = gaussian_data_eps(schedule, var)

    torch.manual_seed(0)
    x, cond = torch.randn(256, 3, 4, 4), torch.zeros(256, 24)
    ts = schedule.timesteps(10, "linspace")
    first, last = a[ts[0]].item(), a[ts[-1]].item()
    grid_std = (
        math.sqrt(last) * var / math.sqrt((last * var + 1 - last) * (first * var + 1 - first)) * x.std()
    )
    out = sample_unipc(exact_eps, schedule, x, cond, timesteps=ts)
    assert abs(out.mean()) < 0.02 and abs(out.std() - grid_std) < 0.01, (out.std(), grid_std)
    dpmpp = sample_dpmpp_2m(exact_eps, schedule, x, cond, timesteps=ts)
    assert abs(out.std() - grid_std) <= abs(dpmpp.std() - grid_std)
    out = sample_unipc(exact_eps, schedule, x, cond, timesteps=schedule.timesteps(50, "linspace"))
    assert abs(out.std() - 0.3) < 0.01, out.std()
