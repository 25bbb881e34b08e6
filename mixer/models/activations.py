"""The activations the suite offers, each with its derivatives: one table for every path.

``fn`` is the forward used under autograd; ``slope`` returns (act, act') and ``curvature``
(act, act', act'') sharing their intermediates (the hand-written reverse passes and forward
sensitivities); ``backward`` maps (dL/d act, saved) to dL/d pre as one fused operation, from
the output when ``saves_output`` else from the pre-activation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mixer.errors import ConfigError

aten = torch.ops.aten


@dataclass(frozen=True)
class Activation:
    fn: Callable[[Tensor], Tensor]
    slope: Callable[[Tensor], tuple[Tensor, Tensor]]
    curvature: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]
    backward: Callable[[Tensor, Tensor], Tensor]
    saves_output: bool = False


def _silu_slope(pre):  # act' = σ (1 + x (1 - σ)) = σ + h - h σ with h = x σ: fewer operations
    sig = torch.sigmoid(pre)
    out = pre * sig
    return out, torch.addcmul(sig + out, out, sig, value=-1)


def _silu_curvature(pre):  # act'' = σ (1 - σ) (2 + x (1 - 2σ)) = 2 σ (1 - σ) + (act' - σ)(1 - 2σ)
    sig = torch.sigmoid(pre)
    out = pre * sig
    slope = torch.addcmul(sig + out, out, sig, value=-1)
    spread = torch.addcmul(sig, sig, sig, value=-1)  # σ (1 - σ)
    curv = torch.addcmul(2 * spread, slope - sig, torch.rsub(sig, 1, alpha=2))
    return out, slope, curv


def _tanh_slope(pre):
    out = torch.tanh(pre)
    return out, 1 - out * out


def _tanh_curvature(pre):
    out = torch.tanh(pre)
    slope = 1 - out * out
    return out, slope, -2 * out * slope


def _softplus_curvature(pre):
    sig = torch.sigmoid(pre)
    return F.softplus(pre), sig, sig * (1 - sig)


def _gelu_parts(pre):
    cdf = 0.5 * (1 + torch.erf(pre / 2**0.5))
    pdf = torch.exp(-0.5 * pre * pre) / (2 * torch.pi) ** 0.5
    return cdf, pdf


def _gelu_slope(pre):
    cdf, pdf = _gelu_parts(pre)
    return pre * cdf, cdf + pre * pdf


def _gelu_curvature(pre):
    cdf, pdf = _gelu_parts(pre)
    return pre * cdf, cdf + pre * pdf, pdf * (2 - pre * pre)


# The order is the config's (its enum lists these names in this order).
ACTIVATIONS: dict[str, Activation] = {
    "silu": Activation(
        F.silu, _silu_slope, _silu_curvature, lambda g, saved: aten.silu_backward(g, saved)
    ),
    "tanh": Activation(
        torch.tanh,
        _tanh_slope,
        _tanh_curvature,
        lambda g, saved: aten.tanh_backward(g, saved),
        saves_output=True,
    ),
    "relu": Activation(
        F.relu,
        lambda pre: (torch.relu(pre), (pre > 0).to(pre.dtype)),
        lambda pre: (torch.relu(pre), (pre > 0).to(pre.dtype), torch.zeros_like(pre)),
        lambda g, saved: aten.threshold_backward(g, saved, 0.0),
        saves_output=True,
    ),
    "gelu": Activation(
        F.gelu, _gelu_slope, _gelu_curvature, lambda g, saved: aten.gelu_backward(g, saved)
    ),
    "softplus": Activation(
        F.softplus,
        lambda pre: (F.softplus(pre), torch.sigmoid(pre)),
        _softplus_curvature,
        lambda g, saved: aten.softplus_backward(g, saved, 1.0, 20.0),
    ),
}


def activation(name: str) -> Activation:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; valid names: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def activation_fn(name: str) -> Callable[[Tensor], Tensor]:
    return activation(name).fn


def act_and_slope(name: str, pre: Tensor) -> tuple[Tensor, Tensor]:
    """(act(pre), act'(pre)), differentiable."""
    return activation(name).slope(pre)


def act_slope_curvature(name: str, pre: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(act, act', act'') at ``pre``, sharing their intermediates (forward sensitivities)."""
    return activation(name).curvature(pre)
