"""Samplers against diffusers' schedulers (the oracle), driven by the same dummy eps function and noise."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from fastddpm.configs import DiffusionConfig, SampleSettings
from fastddpm.errors import UsageError
from fastddpm.sampling.batch import generate, image_seeds
from fastddpm.sampling.samplers import (
    ddim_step,
    guided,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sampler_spec,
)
from fastddpm.schedule import NoiseSchedule, cosine_betas, linear_betas


def dummy_eps(x, t, cond):
    """A smooth, t- and cond-dependent stand-in for the network."""
    return (
        0.5 * torch.tanh(x)
        + 0.001 * t.float().view(-1, 1, 1, 1) * 0.1
        + cond.sum(-1).view(-1, 1, 1, 1) * 0.01
    )


def diffusers_loop(scheduler, steps, x, cond, noise=None):
    scheduler.set_timesteps(steps)
    for i, t in enumerate(scheduler.timesteps):
        eps = dummy_eps(x, torch.full((x.shape[0],), int(t)), cond)
        kwargs = (
            {"variance_noise": noise[i]} if noise is not None and isinstance(scheduler, DDIMScheduler) else {}
        )
        if isinstance(scheduler, DDPMScheduler):
            # diffusers draws DDPM noise itself; feed ours through its generator-free path by patching randn
            kwargs = {}
        x = scheduler.step(eps, t, x, **kwargs).prev_sample
    return x


@pytest.fixture()
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 8, 8, generator=g), torch.eye(24)[:2]


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_equals_diffusers(inputs, schedule, steps):
    x, cond = inputs
    ours = NoiseSchedule.from_config(DiffusionConfig("linear" if schedule == "linear" else "cosine"))
    ref = DDIMScheduler(
        beta_schedule=schedule, timestep_spacing="trailing", clip_sample=True, set_alpha_to_one=True
    )
    assert torch.allclose(ours.alphas_cumprod, ref.alphas_cumprod, atol=1e-7)
    expected = diffusers_loop(ref, steps, x.clone(), cond)
    got = sample_ddim(dummy_eps, ours, x.clone(), cond, timesteps=ours.timesteps(steps, "trailing"))
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


def test_ddim_step_with_per_row_alphas_is_the_samplers_step(inputs):
    """Distillation's teacher steps each row from its own timestep: row by row, that is sample_ddim's walk."""
    x, cond = inputs
    schedule = NoiseSchedule(linear_betas())
    grids = [[999, 499], [300, 100]]  # one two-step walk per row, each ending at alpha-bar 1
    alphas = torch.tensor([[schedule.alphas_cumprod[t].item() for t in grid] + [1.0] for grid in grids])
    z = x
    for k in range(2):
        t = torch.tensor([grid[k] for grid in grids])
        a = [alphas[:, k + j].view(-1, 1, 1, 1) for j in (0, 1)]
        z = ddim_step(z, dummy_eps(z, t, cond), *a)
    for row, grid in enumerate(grids):
        walked = sample_ddim(dummy_eps, schedule, x[row : row + 1], cond[row : row + 1], timesteps=grid)
        assert torch.allclose(z[row : row + 1], walked, atol=1e-5)


def test_ddim_with_eta_equals_diffusers(inputs):
    x, cond = inputs
    noise = torch.randn(20, *x.shape, generator=torch.Generator().manual_seed(1))
    ref = DDIMScheduler(timestep_spacing="trailing")
    ref.set_timesteps(20)
    y = x.clone()
    for i, t in enumerate(ref.timesteps):
        y = ref.step(
            dummy_eps(y, torch.full((2,), int(t)), cond), t, y, eta=0.7, variance_noise=noise[i]
        ).prev_sample
    schedule = NoiseSchedule(linear_betas())
    got = sample_ddim(
        dummy_eps,
        schedule,
        x.clone(),
        cond,
        timesteps=schedule.timesteps(20, "trailing"),
        eta=0.7,
        noise=noise,
    )
    assert torch.allclose(got, y, atol=1e-5)


def test_ddpm_equals_diffusers(inputs, monkeypatch):
    x, cond = inputs
    steps = 1000
    noise = torch.randn(steps, *x.shape, generator=torch.Generator().manual_seed(2))
    ref = DDPMScheduler(clip_sample=True, variance_type="fixed_small")
    ref.set_timesteps(steps)
    y = x.clone()
    for i, t in enumerate(ref.timesteps):
        # diffusers draws the noise inside step(); hand it ours
        monkeypatch.setattr(
            "diffusers.schedulers.scheduling_ddpm.randn_tensor", lambda *a, _n=noise[i], **k: _n
        )
        y = ref.step(dummy_eps(y, torch.full((2,), int(t)), cond), t, y).prev_sample
    schedule = NoiseSchedule(linear_betas())
    got = sample_ddpm(
        dummy_eps, schedule, x.clone(), cond, timesteps=schedule.timesteps(steps, "leading"), noise=noise
    )
    assert torch.allclose(got, y, atol=1e-4), (got - y).abs().max()


@pytest.mark.parametrize("steps", [5, 10, 20])
def test_dpmpp_2m_equals_diffusers(inputs, steps):
    x, cond = inputs
    ref = DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint")
    expected = diffusers_loop(ref, steps, x.clone(), cond)
    schedule = NoiseSchedule(linear_betas())
    got = sample_dpmpp_2m(
        dummy_eps, schedule, x.clone(), cond, timesteps=schedule.timesteps(steps, "linspace")
    )
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


def test_schedule_properties():
    for betas in (linear_betas(), cosine_betas()):
        a = NoiseSchedule(betas).alphas_cumprod
        assert (a[1:] < a[:-1]).all() and a[0] < 1 and a[-1] > 0
    s = NoiseSchedule(linear_betas())
    for spacing in ("leading", "trailing", "linspace"):
        for n in (1, 7, 50, 500 if spacing == "linspace" else 1000):
            ts = s.timesteps(n, spacing)
            assert (
                len(ts) == n == len(set(ts))
                and ts == sorted(ts, reverse=True)
                and 0 <= min(ts)
                and max(ts) <= 999
            )
    assert s.timesteps(1000, "leading") == list(range(999, -1, -1))


def gaussian_data_eps(schedule: NoiseSchedule, var: float):
    """The exact eps(x_t, t) of data x_0 ~ N(0, var): a network-free oracle whose samples must have that law."""
    a = schedule.alphas_cumprod

    def exact_eps(x, t, cond):
        a_t = a[t].view(-1, 1, 1, 1)
        return (1 - a_t).sqrt() * x / (a_t * var + 1 - a_t)

    return exact_eps


def test_ddim_1000_steps_eta_1_matches_ddpm_statistics():
    """Data x_0 ~ N(0, 0.3^2) has an exact eps(x_t, t); DDPM-1000 and DDIM-1000 with eta = 1 must both sample it,
    and with the same noise they take the same path (up to x_0 clipping)."""
    schedule = NoiseSchedule(linear_betas())
    exact_eps = gaussian_data_eps(schedule, 0.3**2)

    torch.manual_seed(0)
    x = torch.randn(256, 3, 4, 4)
    noise = torch.randn(1000, *x.shape)
    cond = torch.zeros(256, 24)
    ddpm = sample_ddpm(
        exact_eps, schedule, x, cond, timesteps=schedule.timesteps(1000, "leading"), noise=noise
    )
    ddim = sample_ddim(
        exact_eps, schedule, x, cond, timesteps=schedule.timesteps(1000, "trailing"), eta=1.0, noise=noise
    )
    for out in (ddpm, ddim):
        assert abs(out.mean()) < 0.02 and abs(out.std() - 0.3) < 0.02
    # Identical paths except where x_0 is clipped to [-1, 1] (DDIM's direction term keeps the unclipped eps).
    assert (ddpm - ddim).abs().lt(1e-3).float().mean() > 0.99
    # The deterministic samplers integrate the same law; DPM-Solver++ gets there in fewer steps than DDIM.
    ddim_200 = sample_ddim(exact_eps, schedule, x, cond, timesteps=schedule.timesteps(200, "trailing"))
    assert abs(ddim_200.std() - 0.3) < 0.02
    dpmpp_50 = sample_dpmpp_2m(exact_eps, schedule, x, cond, timesteps=schedule.timesteps(50, "linspace"))
    assert abs(dpmpp_50.std() - 0.3) < 0.01


def test_guidance_scale_one_is_the_conditional_model():
    calls = []

    def eps(x, t, cond):
        calls.append(x.shape[0])
        return dummy_eps(x, t, cond)

    x, t, cond = torch.randn(3, 3, 8, 8), torch.full((3,), 500), torch.eye(24)[:3]
    assert torch.equal(guided(eps, 1.0)(x, t, cond), dummy_eps(x, t, cond))
    assert calls == [3]
    out = guided(eps, 3.0)(x, t, cond)
    assert calls[-1] == 6  # conditional and null rows in one call
    e_c, e_u = dummy_eps(x, t, cond), dummy_eps(x, t, torch.zeros_like(cond))
    assert torch.allclose(out, e_u + 3.0 * (e_c - e_u))


def test_guidance_interval_applies_the_scale_only_inside_it():
    x, cond = torch.randn(4, 3, 8, 8), torch.eye(24)[:4]
    t = torch.tensor([99, 100, 600, 601])  # rows on both sides of each end of the interval
    out = guided(dummy_eps, 3.0, interval=(100, 600))(x, t, cond)
    e_c, e_u = dummy_eps(x, t, cond), dummy_eps(x, t, torch.zeros_like(cond))
    full = e_u + 3.0 * (e_c - e_u)
    assert torch.allclose(out[1:3], full[1:3])
    assert torch.allclose(out[[0, 3]], e_c[[0, 3]], atol=1e-6)
    assert not torch.allclose(full[[0, 3]], e_c[[0, 3]])  # the dummy's rows differ with the condition


@pytest.mark.parametrize(
    ("spacing", "diffusers_option"), [("logsnr", "use_lu_lambdas"), ("karras", "use_karras_sigmas")]
)
def test_dense_grids_are_diffusers_grids_without_their_last_point(spacing, diffusers_option):
    """Ours at n steps = diffusers' n + 1 timesteps less the last (t = 0): our final update lands on the clean
    image from the point before it, as on the linspace grid."""
    ours = NoiseSchedule(linear_betas())
    for steps in (1, 2, 10, ours.max_steps(spacing)):
        ref = DPMSolverMultistepScheduler(**{diffusers_option: True})
        ref.set_timesteps(steps + 1)
        assert ours.timesteps(steps, spacing) == ref.timesteps.tolist()[:-1]


@pytest.mark.parametrize("spacing", ["quadratic", "logsnr", "karras"])
def test_dense_grids_are_distinct_decreasing_and_denser_at_low_noise(spacing):
    s = NoiseSchedule(linear_betas())
    top = s.max_steps(spacing)
    for n in (1, 10, top):
        ts = s.timesteps(n, spacing)
        assert len(set(ts)) == n and ts == sorted(ts, reverse=True) and ts[0] == 999 and ts[-1] >= 0
    low_noise = [sum(t < 100 for t in s.timesteps(10, grid)) for grid in (spacing, "linspace")]
    assert low_noise[0] > low_noise[1]
    with pytest.raises(ValueError, match=f"1 to {top} distinct"):
        s.timesteps(top + 1, spacing)
    assert s.timesteps(10, "quadratic") == [round(999 * (1 - i / 10) ** 2) for i in range(10)]


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp", "unipc", "ddpm"])
def test_a_spacing_setting_replaces_the_samplers_grid(sampler):
    schedule, seen = NoiseSchedule(linear_betas()), []

    def recording_eps(x, t, cond):
        seen.append(int(t[0]))
        return dummy_eps(x, t, cond)

    cond = torch.eye(24)[:1]
    settings = SampleSettings(sampler, 6, guidance=1.0, batch_size=1, spacing="karras")
    generate(recording_eps, schedule, cond, image_seeds(0, 1), settings)
    assert seen == schedule.timesteps(6, "karras") != schedule.timesteps(6, sampler_spec(sampler).spacing)


@pytest.mark.parametrize("interval", [(5, 2), (-1, 10), (1.5, 10), (3,), "1,2"])
def test_bad_guidance_interval_is_refused(interval):
    with pytest.raises(UsageError, match="--guidance-interval"):
        SampleSettings(guidance_interval=interval)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp", "ddpm", "unipc"])
def test_images_do_not_depend_on_batch_composition(sampler):
    schedule = NoiseSchedule(linear_betas())
    cond = torch.eye(24)[:5]
    seeds = image_seeds(3, 5)
    steps = 20 if sampler == "ddpm" else 4
    eps = lambda x, t, c: dummy_eps(x, t, c) * 0.1  # noqa: E731
    big = generate(eps, schedule, cond, seeds, SampleSettings(sampler, steps, batch_size=5))
    small = generate(eps, schedule, cond, seeds, SampleSettings(sampler, steps, batch_size=2))
    alone = generate(eps, schedule, cond[3:4], seeds[3:4], SampleSettings(sampler, steps, batch_size=1))
    assert torch.allclose(big, small, atol=1e-6) and torch.allclose(big[3:4], alone, atol=1e-6)
    again = generate(eps, schedule, cond, seeds, SampleSettings(sampler, steps, batch_size=5))
    assert torch.equal(big, again)
    other = generate(eps, schedule, cond, image_seeds(4, 5), SampleSettings(sampler, steps, batch_size=5))
    assert not torch.allclose(big, other)
