"""Samplers: pure functions of (eps_fn, schedule, x_T, cond) -> images, one signature for all.

    sample(eps_fn, schedule, x_T, cond, *, timesteps, [eta,] [noise,] callback=None) -> x_0

Like k-diffusion's samplers take `sigmas`, ours take the decreasing list of integer `timesteps` to visit; the
registry at the end (one SamplerSpec per sampler) says on which grid each is defined, its default step count, how
much per-step noise it consumes and whether eta applies, and builds the call from (steps, eta).

Notation (papers -> code):
    alpha-bar_t (DDPM's cumulative product)        a_t = schedule.alphas_cumprod[t]
    eps_theta(x_t, t, c)                            eps_fn(x, t, cond)
    predicted x_0 (DDPM eq. 15, DDIM eq. 12)        x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t)
    DPM-Solver's alpha_t, sigma_t, lambda_t         alpha = sqrt(a_t), sigma = sqrt(1 - a_t), lam = log(alpha / sigma)
    data prediction x_theta (DPM-Solver++, UniPC)   x0, m
    UniPC's h, B(h) (bh2), r_k, rho_k               h = lam_t - lam_s0, bh = expm1(-h), r, rho_old / rho_new

The loops are plain Python over precomputed scalars with fixed tensor shapes and no host synchronisation, so a
whole run can be captured into one CUDA graph (see capture.py). Stochastic samplers take their per-step noise as
an argument (steps, B, 3, H, W), drawn per image by the caller, so that an image never depends on its batch.
The step formulas equal diffusers' DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler and
UniPCMultistepScheduler (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fastddpm.choices import SamplerName
from fastddpm.errors import UsageError
from fastddpm.schedule import NoiseSchedule

EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, torch.Tensor], None]  # (step index, x after that step)


def guided(eps_fn: EpsFn, scale: float, interval: tuple[int, int] | None = None) -> EpsFn:
    """Classifier-free guidance: eps_u + s (eps_c - eps_u), conditional and null rows in one batched call.
    Scale 1 is the plain conditional model (no extra work). With an interval (lo, hi) the scale applies only at
    timesteps lo <= t <= hi and the other steps take the conditional eps (Kynkaanniemi et al. 2024, "Applying
    guidance in a limited interval"); the choice is made per row on the device, so a run stays capturable."""
    if scale == 1.0:
        return eps_fn

    def guided_eps(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        both = eps_fn(torch.cat((x, x)), torch.cat((t, t)), torch.cat((cond, torch.zeros_like(cond))))
        eps_cond, eps_null = both.chunk(2)
        if interval is None:
            return eps_null + scale * (eps_cond - eps_null)
        inside = ((t >= interval[0]) & (t <= interval[1])).to(eps_cond.dtype).view(-1, 1, 1, 1)
        return eps_null + (1 + (scale - 1) * inside) * (eps_cond - eps_null)

    return guided_eps


def rows_per_image(scale: float) -> int:
    """Network rows each image costs per call: its conditional and null rows under guidance, else one."""
    return 1 if scale == 1.0 else 2


def _timestep(t: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)


Alpha = float | torch.Tensor  # one alpha-bar for the whole batch, or one per row (B, 1, 1, 1)


def _sqrt(a: Alpha) -> Alpha:
    """Python floats in double precision, as the samplers precompute their scalars; tensors in their dtype."""
    return a.sqrt() if isinstance(a, torch.Tensor) else math.sqrt(a)


def _predict_x0(x: torch.Tensor, eps: torch.Tensor, a_t: Alpha, clip: bool) -> torch.Tensor:
    x0 = (x - _sqrt(1 - a_t) * eps) / _sqrt(a_t)
    return x0.clamp(-1, 1) if clip else x0


def ddim_step(
    x: torch.Tensor, eps: torch.Tensor, a_t: Alpha, a_next: Alpha, sigma: float = 0.0, noise=None
) -> torch.Tensor:
    """One DDIM step (eq. 12) from alpha-bar a_t to a_next: x_{t-1} = sqrt(a_next) x_0 + direction pointing to
    x_t + sigma noise, with x_0 predicted from eps and clipped; sigma = 0 (and no noise) is deterministic."""
    x0 = _predict_x0(x, eps, a_t, clip=True)
    direction = 1 - a_next - sigma**2
    direction = direction.clamp(min=0.0) if isinstance(direction, torch.Tensor) else max(direction, 0.0)
    x = _sqrt(a_next) * x0 + _sqrt(direction) * eps
    return x + sigma * noise if sigma > 0 else x


def _steps(schedule: NoiseSchedule, timesteps: list[int]) -> list[tuple[int, float, float]]:
    """(t, alpha-bar_t, alpha-bar of the next timestep) per step; the step after the last one has alpha-bar 1."""
    ac = schedule.alphas_cumprod.tolist()
    return [
        (t, ac[t], ac[timesteps[i + 1]] if i + 1 < len(timesteps) else 1.0) for i, t in enumerate(timesteps)
    ]


def sample_ddpm(eps_fn: EpsFn, schedule: NoiseSchedule, x_T, cond, *, timesteps, noise, callback=None):
    """Ancestral DDPM sampling (Ho et al. 2020, Alg. 2) with the 'fixed small' posterior variance."""
    steps = len(timesteps)
    if noise is None or noise.shape[0] < steps:
        raise ValueError(f"DDPM needs per-step noise of shape ({steps}, B, C, H, W)")
    x = x_T
    for i, (t, a_t, a_prev) in enumerate(_steps(schedule, timesteps)):
        alpha, beta = a_t / a_prev, 1 - a_t / a_prev
        # 1. predict x_0 from the noise estimate (eq. 15), clipped to the image range
        x0 = _predict_x0(x, eps_fn(x, _timestep(t, x), cond), a_t, clip=True)
        # 2. mean of the posterior q(x_{t-1} | x_t, x_0) (eq. 7)
        x = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (math.sqrt(alpha) * (1 - a_prev) / (1 - a_t)) * x
        # 3. add noise with variance beta-tilde_t = (1 - a_prev) / (1 - a_t) beta_t, except at the last step
        if i + 1 < steps:
            x = x + math.sqrt(max((1 - a_prev) / (1 - a_t) * beta, 1e-20)) * noise[i]
        if callback:
            callback(i, x)
    return x


def sample_ddim(
    eps_fn: EpsFn, schedule: NoiseSchedule, x_T, cond, *, timesteps, eta=0.0, noise=None, callback=None
):
    """DDIM (Song et al. 2021, eq. 12); eta = 0 is deterministic, eta = 1 is DDPM-like."""
    if eta > 0 and (noise is None or noise.shape[0] < len(timesteps)):
        raise ValueError(f"DDIM with eta > 0 needs per-step noise of shape ({len(timesteps)}, B, C, H, W)")
    x = x_T
    for i, (t, a_t, a_prev) in enumerate(_steps(schedule, timesteps)):
        eps = eps_fn(x, _timestep(t, x), cond)
        # sigma_t (eq. 16) interpolates between DDIM (eta 0) and DDPM (eta 1)
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        x = ddim_step(x, eps, a_t, a_prev, sigma, noise[i] if sigma > 0 else None)
        if callback:
            callback(i, x)
    return x


def sample_dpmpp_2m(eps_fn: EpsFn, schedule: NoiseSchedule, x_T, cond, *, timesteps, callback=None):
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2): data prediction, multistep second order (midpoint form);
    first order at the first step and at the final step to sigma = 0, as diffusers does."""
    ac = schedule.alphas_cumprod.tolist()
    ts = timesteps
    alpha = [math.sqrt(ac[t]) for t in ts] + [1.0]
    sigma = [math.sqrt(1 - ac[t]) for t in ts] + [0.0]
    lam = [math.log(a / s) for a, s in zip(alpha[:-1], sigma[:-1], strict=True)]
    x, previous_x0 = x_T, None
    for i, t in enumerate(ts):
        eps = eps_fn(x, _timestep(t, x), cond)
        # 1. data prediction x_theta = (x - sigma_s eps) / alpha_s
        x0 = (x - sigma[i] * eps) / alpha[i]
        if i + 1 == len(ts):
            x = x0  # 2a. final step to sigma = 0: the first-order update reduces to x_0
        else:
            h = lam[i + 1] - lam[i]
            decay = math.expm1(-h)  # exp(-h) - 1
            d = x0
            if previous_x0 is not None:
                # 2b. second order: D = D0 + 1/(2 r) (D0 - D1), r = h_{i-1} / h (eq. for 2M, midpoint form)
                r = (lam[i] - lam[i - 1]) / h
                d = x0 + (0.5 / r) * (x0 - previous_x0)
            x = (sigma[i + 1] / sigma[i]) * x - alpha[i + 1] * decay * d
        previous_x0 = x0
        if callback:
            callback(i, x)
    return x


def _unipc_weights(lam_s: list[float], lam_t: float, corrector: bool) -> list[float]:
    """Weights w of one bh2 update from s0 = the last of lam_s (one or two past points) to lam_t, written
    x_t = sigma_t / sigma_s0 x_s0 + alpha_t sum_j w_j m_j over the data predictions m at lam_s (oldest first) and,
    for the corrector UniC, at t after them. It is  -alpha_t B(h) (m_s0 + sum_k rho_k D_k)  with
    D_k = (m_k - m_s0) / r_k: UniP-2 takes rho = 1/2; UniC solves R_p rho = g_p(h) / B(h) (Theorem 3.1)."""
    h = lam_t - lam_s[-1]
    bh = math.expm1(-h)  # B(h) for bh2 in the data-prediction form
    r = (lam_s[0] - lam_s[-1]) / h if len(lam_s) == 2 else None  # r_1 of the older point
    phi = bh / -h - 1  # the phi-recursion of g_p(h): b_1, b_2 = 1! phi_2 / B(h), 2! phi_3 / B(h)
    b1, b2 = phi / bh, 2 * (phi / -h - 0.5) / bh
    rho_old = rho_new = 0.0
    if corrector and r is not None:  # R_2 = [[1, 1], [r, 1]] solved by hand
        rho_old = (b1 - b2) / (1 - r)
        rho_new = b1 - rho_old
    elif corrector:
        rho_new = 0.5
    elif r is not None:
        rho_old = 0.5
    d_old, d_new = (rho_old / r if r is not None else 0.0), rho_new  # D's factors: r_old = r, r_new = 1
    weights = ([-bh * d_old] if r is not None else []) + [-bh * (1 - d_old - d_new)]
    return weights + ([-bh * d_new] if corrector else [])


def sample_unipc(eps_fn: EpsFn, schedule: NoiseSchedule, x_T, cond, *, timesteps, order=2, callback=None):
    """UniPC-p multistep (Zhao et al. 2023), B(h) = expm1(h) ("bh2"), data prediction, p <= 2; one network call
    per step: the corrector UniC reuses the model output at the predicted point. Equals diffusers'
    UniPCMultistepScheduler(solver_order=p, solver_type="bh2", lower_order_final=True) on the same grid.
    Here r_k = (lambda_{s_k} - lambda_{s_0}) / h and m = x_theta, the data prediction."""
    if order not in (1, 2):
        raise ValueError(f"UniPC is implemented for order 1 or 2; got {order}")
    ac, n = schedule.alphas_cumprod.tolist(), len(timesteps)
    alpha = [math.sqrt(ac[t]) for t in timesteps]
    sigma = [math.sqrt(1 - ac[t]) for t in timesteps]
    lam = [math.log(a / s) for a, s in zip(alpha, sigma, strict=True)]
    orders = [min(order, i + 1, n - i) for i in range(n)]  # warm-up and lower_order_final

    def update(ratio: float, x, alpha_t: float, w: list[float], ms: list):
        return sum(((alpha_t * wj) * mj for wj, mj in zip(w, ms, strict=True)), ratio * x)

    x, x_prev, models = x_T, x_T, []
    for i, t in enumerate(timesteps):
        # 1. data prediction at the predicted point
        m = (x - sigma[i] * eps_fn(x, _timestep(t, x), cond)) / alpha[i]
        if 0 < i < n - 1:
            # 2. UniC: redo t_{i-1} -> t_i with m as an extra node (no effect at the last step: sigma_0 = 0)
            p = orders[i - 1]
            w = _unipc_weights(lam[i - p : i], lam[i], corrector=True)
            x = update(sigma[i] / sigma[i - 1], x_prev, alpha[i], w, [*models[-p:], m])
        models, x_prev = [*models, m][-order:], x
        if i + 1 == n:
            x = m  # 3a. final step to sigma = 0: the update reduces to x_theta
        else:
            # 3b. UniP-p from t_i to t_{i+1} on the last p data predictions
            p = orders[i]
            w = _unipc_weights(lam[i + 1 - p : i + 1], lam[i + 1], corrector=False)
            x = update(sigma[i + 1] / sigma[i], x, alpha[i + 1], w, models[-p:])
        if callback:
            callback(i, x)
    return x


SamplerFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class SamplerSpec:
    """Everything the rest of fastddpm knows about one sampler."""

    name: str  # as typed on the command line
    title: str  # as printed in tables
    fn: SamplerFn
    default_steps: int  # when --steps is not given
    spacing: str  # the timestep grid it runs on unless told another (diffusers' timestep_spacing)
    stochastic: bool = False  # consumes one noise tensor per step, always
    uses_eta: bool = False  # takes eta (and then, for eta > 0, one noise tensor per step)
    reference: bool = False  # the 1000-step reference: the bench runs it at default_steps only

    def check_steps(self, steps: int, schedule: NoiseSchedule, spacing: str | None = None) -> None:
        """1 to the most steps the grid (`spacing`, or the sampler's own) gives distinct timesteps for."""
        grid = spacing or self.spacing
        top = schedule.max_steps(grid)
        if not 1 <= steps <= top:
            why = "" if top == schedule.num_timesteps else f" (its {grid} grid repeats timesteps beyond that)"
            raise UsageError(f"--steps {steps} is out of range: {self.name} takes 1 to {top} steps{why}")

    def check_eta(self, eta: float) -> None:
        if eta != 0 and not self.uses_eta:
            users = ", ".join(s.name for s in SAMPLERS.values() if s.uses_eta)
            raise UsageError(f"--eta {eta}: {self.name} takes no eta (only {users} does)")

    def network_calls(self, steps: int) -> int:
        """Network calls in a run of `steps`: every sampler here calls it once per step (multistep methods reuse
        earlier outputs instead of extra evaluations)."""
        return steps

    def noise_steps(self, steps: int, eta: float) -> int:
        """How many per-step noise tensors a run of `steps` consumes."""
        return steps if self.stochastic or (self.uses_eta and eta > 0) else 0

    def __call__(
        self, eps_fn: EpsFn, schedule: NoiseSchedule, x_T, cond, *, steps, eta, noise, callback, spacing=None
    ):
        """Run on a grid of `steps` timesteps (`spacing`, or this sampler's own), passing eta and noise where
        they apply."""
        extra = {"eta": eta} if self.uses_eta else {}
        if self.noise_steps(steps, eta):
            extra["noise"] = noise
        timesteps = schedule.timesteps(steps, spacing or self.spacing)
        return self.fn(eps_fn, schedule, x_T, cond, timesteps=timesteps, callback=callback, **extra)


SAMPLERS = {
    spec.name: spec
    for spec in (
        SamplerSpec("ddpm", "DDPM", sample_ddpm, 1000, "leading", stochastic=True, reference=True),
        SamplerSpec("ddim", "DDIM", sample_ddim, 50, "trailing", uses_eta=True),
        SamplerSpec("dpmpp", "DPM-Solver++(2M)", sample_dpmpp_2m, 20, "linspace"),
        SamplerSpec("unipc", "UniPC(bh2)", sample_unipc, 10, "linspace"),
    )
}
assert set(SAMPLERS) == set(SamplerName.names()), (
    "configs.SamplerName must list exactly the registry's samplers"
)


def sampler_spec(name: str) -> SamplerSpec:
    """The registry's record for `name`, or a UsageError listing the choices."""
    if name not in SAMPLERS:
        raise UsageError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
