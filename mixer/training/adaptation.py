"""Contexts-only adaptation to new environments (docs/METHOD.md §5), shared by every learner."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mixer.training.batches import EnvBatch
from mixer.training.optim import make_optimizer


def per_env_mse(pred: Tensor, target: Tensor) -> Tensor:
    """[E, N, T, d] pair -> [E] mean squared error per environment."""
    return (pred - target).square().mean(dim=(1, 2, 3))


def fit_new_contexts(
    trajectories_of: Callable[[Tensor], Tensor],
    init: Tensor,
    support: EnvBatch,
    cfg: dict,
    frozen: list[Tensor],
    penalty: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Fit one context per row of ``support`` from ``init`` [R, d_ξ], the model frozen.

    ``trajectories_of(contexts)`` returns the model's trajectories [R, N, T, d] of the support
    rows with those contexts (an ODE rollout, or a teacher-forced PL-RNN); ``cfg`` is the
    ``adaptation`` block (steps, lr, optimizer). The loss is the support MSE averaged over
    rows, as in training (+ ``penalty`` Σ ||ξ||², as in training). Each row keeps the iterate
    of lowest support MSE seen: a hard gate can re-route a context mid-adaptation to a worse
    expert, and selecting on support data only is legitimate model selection. Returns
    (contexts [R, d_ξ], support MSE [R]).
    """
    ctx = nn.Parameter(init.detach().clone())
    best_ctx = ctx.detach().clone()
    best_loss = torch.full((len(init),), float("inf"), device=init.device)
    for p in frozen:
        p.requires_grad_(False)
    try:
        opt = make_optimizer(cfg["optimizer"], [ctx], cfg["lr"])
        for step in range(cfg["steps"] + 1):
            opt.zero_grad(set_to_none=True)
            pred = trajectories_of(ctx)
            per_row = per_env_mse(pred, support.X)
            better = per_row.detach() < best_loss
            best_loss = torch.where(better, per_row.detach(), best_loss)
            best_ctx = torch.where(better.unsqueeze(1), ctx.detach(), best_ctx)
            if step == cfg["steps"]:
                break
            # Averaged over rows as the training loss is, so that a context penalty weighs the
            # same against the fit here as in training (the rows are independent).
            (per_row.mean() + penalty * ctx.square().sum()).backward()
            opt.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return best_ctx, best_loss
