"""EDM objective and sampler (Karras et al., 2022) with classifier-free guidance.

The network (engine.models.class_unet.ClassUNet) is a denoiser D(x; sigma, class).
- `edm_loss`: log-normal noise levels, EDM loss weighting, labels dropped to the
  "no class" token with probability `label_dropout` (for guidance);
- `heun_sample`: the deterministic 2nd-order Heun sampler on the Karras sigma
  schedule, `steps` steps (2 * steps - 1 network evaluations), guidance
  D = D_uncond + w (D_cond - D_uncond); w = 1 is plain conditional sampling.
"""

from __future__ import annotations

import math

import torch

P_MEAN, P_STD = -1.2, 1.2
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0


def edm_loss(net, x: torch.Tensor, labels: torch.Tensor, label_dropout: float = 0.15,
             generator: torch.Generator | None = None, wide_noise: float = 0.0, forward=None) -> torch.Tensor:
    """`forward`: what runs `net` (a DistributedDataParallel over it, say); `net` itself by default.
    wide_noise: share of the batch whose noise level is drawn log-uniformly over the sampler's
    whole range [SIGMA_MIN, SIGMA_MAX] instead of EDM's log-normal, which almost never reaches
    the levels where sampling starts (sigma > 20: 1 in 2000)."""
    n = x.shape[0]
    sigma = (torch.randn(n, device=x.device, generator=generator) * P_STD + P_MEAN).exp()
    if wide_noise > 0:
        lo, hi = math.log(SIGMA_MIN), math.log(SIGMA_MAX)
        wide = (lo + (hi - lo) * torch.rand(n, device=x.device, generator=generator)).exp()
        pick = torch.rand(n, device=x.device, generator=generator) < wide_noise
        sigma = torch.where(pick, wide, sigma)
    drop = torch.rand(n, device=x.device, generator=generator) < label_dropout
    labels = torch.where(drop, torch.full_like(labels, net.num_classes), labels)
    noisy = x + torch.randn(x.shape, device=x.device, generator=generator) * sigma[:, None, None, None]
    sd = net.sigma_data
    weight = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
    return (weight[:, None, None, None] * ((forward or net)(noisy, sigma, labels) - x) ** 2).mean()


def sigma_schedule(steps: int, device=None) -> torch.Tensor:
    i = torch.arange(steps, dtype=torch.float64, device=device)
    s = (SIGMA_MAX ** (1 / RHO) + i / max(steps - 1, 1) * (SIGMA_MIN ** (1 / RHO) - SIGMA_MAX ** (1 / RHO))) ** RHO
    return torch.cat([s, torch.zeros(1, dtype=s.dtype, device=device)])


def _guided(net, x, sigma, labels, guidance: float):
    s = torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype)
    if guidance == 1.0:
        return net(x, s, labels)
    uncond = torch.full_like(labels, net.num_classes)
    both = net(torch.cat([x, x]), torch.cat([s, s]), torch.cat([labels, uncond]))
    cond, free = both.chunk(2)
    return free + guidance * (cond - free)


@torch.no_grad()
def heun_sample(net, noise: torch.Tensor, labels: torch.Tensor, steps: int = 18, guidance: float = 2.0,
                progress=None) -> torch.Tensor:
    """noise (N, C, H, W) ~ N(0, 1) -> samples; deterministic given the noise."""
    sigmas = sigma_schedule(steps, noise.device)
    x = noise.double() * sigmas[0]
    for i in range(steps):
        s0, s1 = sigmas[i], sigmas[i + 1]
        d = (x - _guided(net, x.float(), s0, labels, guidance).double()) / s0
        x1 = x + (s1 - s0) * d
        if s1 > 0:  # Heun's correction, except at the last step
            d1 = (x1 - _guided(net, x1.float(), s1, labels, guidance).double()) / s1
            x1 = x + (s1 - s0) * (d + d1) / 2
        x = x1
        if progress is not None:
            progress((i + 1) / steps)
    return x.float()
