"""Proximal alternating minimisation (docs/METHOD.md §3.1), with checkpoints and divergence
handling.

The loop is generic over a learner that exposes its context and model parameters, a loss,
and hooks (gate refit, routing record). One outer step:

    Ξ_old, θ_old ← copies
    n_ctx   times: Ξ ← opt_ctx step on L(θ, Ξ) + β_ξ/2 ||Ξ − Ξ_old||²   (hook after each inner step)
    n_model times: θ ← opt_θ   step on L(θ, Ξ) + β_θ/2 ||θ − θ_old||²   (hook after each inner step)

The proximal term of a group (the contexts, or the model) is its squared distance
||θ − θ_old||² summed over all its tensors, either divided once by the group's total number of
entries (``proximal_norm: mean``, the default: the mean squared distance of the flattened group,
as the reference code's ``params_diff_norm_squared``) or not at all (``sum``). It is added to
the gradients in place, grad += β s (θ − θ_old), with one scale s for the whole group
(1/numel of the group for the mean, 1 for the sum).
Host synchronisation happens once per outer step, where the loss is logged and checked for
NaN/inf.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from mixer.training.bookkeeping import RunState, TrainLog
from mixer.training.optim import lr_factor, make_optimizer


def proximal_scales(params, mode: str = "sum") -> list[float]:
    """Scale of the proximal pull on each tensor of one group ``params``.

    "sum": 1. "mean": 1/N for every tensor, N the number of entries of the whole group, so
    that β/2 Σ_t s ||p_t − anchor_t||² is β/2 times the mean squared distance of the flattened
    group (the reference code divides once by the total parameter count, not each tensor by
    its own size).
    """
    if mode == "sum":
        return [1.0] * len(params)
    if mode == "mean":
        total = sum(p.numel() for p in params)
        return [1.0 / total] * len(params)
    raise ValueError(f"unknown proximal scale {mode!r}; valid: sum, mean")


def add_proximal_(params, anchors, beta: float, scales) -> None:
    """grad += β s (p − anchor), in place: the gradient of β/2 s ||p − anchor||² per tensor."""
    if not beta:
        return
    diffs = torch._foreach_sub([p.detach() for p in params], anchors)
    if any(scale != 1.0 for scale in scales):
        torch._foreach_mul_(diffs, list(scales))
    torch._foreach_add_([p.grad for p in params], diffs, alpha=beta)


@contextmanager
def _gradient_only_for(params, frozen):
    """Turn requires_grad off on ``frozen`` (those that had it) for the duration."""
    ids = {id(p) for p in params}
    switched = [p for p in frozen if p.requires_grad and id(p) not in ids]
    for p in switched:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in switched:
            p.requires_grad_(True)


def _set_grads(params, loss) -> None:
    """Gradients of ``loss`` with respect to ``params`` only (nothing else is computed)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.zeros_like(p) if g is None else g


def train_alternating(learner, batch, cfg: dict, checkpoint: Path | None = None) -> TrainLog:
    """Train ``learner`` on ``batch`` (all training environments) and return its log.

    Args:
        learner: exposes ``context_parameters()``, ``model_parameters()``, ``loss(batch, envs)``,
            ``after_inner_step(batch, inner_step)``, ``active_experts()``, ``routing()``,
            ``start_outer_step(outer, n_outer)``, ``state_dict()``/``load_state_dict()``;
            optionally ``attach_optimizers(opt_ctx, opt_model)``, called once the optimisers
            exist (and after a resume).
        cfg: the method's ``training`` block (outer_steps, n_ctx, n_model, lr_ctx, lr_model,
            optimizer, proximal_ctx, proximal_model, env_batch, checkpoint_every; and
            ``proximal_norm``, "sum" or "mean" over the group, see :func:`proximal_scales`).
        checkpoint: a :class:`mixer.training.checkpoints.Checkpoint` (or a path) to resume
            from when it is this run's, and to write every ``checkpoint_every`` outer steps.

    Each phase differentiates with respect to its own parameters only: the other group's
    ``requires_grad`` is off during its steps, so no gradient is computed for it.

    Raises:
        Diverged: when the loss becomes non-finite (the caller records the status).
    """
    ctx_params, model_params = learner.context_parameters(), learner.model_parameters()
    opt_ctx = make_optimizer(cfg["optimizer"], ctx_params, cfg["lr_ctx"])
    opt_model = make_optimizer(cfg["optimizer"], model_params, cfg["lr_model"])
    run = RunState(learner, cfg, {"opt_ctx": opt_ctx, "opt_model": opt_model}, checkpoint)
    log = run.log
    attach = getattr(learner, "attach_optimizers", None)
    if attach is not None:
        attach(opt_ctx, opt_model)
    mode = cfg["proximal_norm"]
    phases = [
        (ctx_params, opt_ctx, cfg["n_ctx"], cfg["proximal_ctx"], proximal_scales(ctx_params, mode)),
        (model_params, opt_model, cfg["n_model"], cfg["proximal_model"],
         proximal_scales(model_params, mode)),
    ]  # fmt: skip
    everything = [*ctx_params, *model_params]
    n_outer = cfg["outer_steps"]
    for outer in run.outer_steps():
        learner.start_outer_step(outer, n_outer)
        for group in opt_model.param_groups:
            group["lr"] = cfg["lr_model"] * lr_factor(cfg, outer, n_outer)
        losses = []
        for params, opt, n_inner, beta, scales in phases:
            if not params:
                continue
            anchors = [p.detach().clone() for p in params]
            with _gradient_only_for(params, everything):
                for _ in range(n_inner):
                    envs = _env_subset(learner, batch, cfg.get("env_batch"))
                    loss = learner.loss(batch, envs)
                    _set_grads(params, loss)
                    add_proximal_(params, anchors, beta, scales)
                    opt.step(learner.active_experts() if opt is opt_model else None)
                    log.inner_steps += 1
                    learner.after_inner_step(batch, log.inner_steps)
                    losses.append(loss.detach())
            opt.zero_grad(set_to_none=True)
        run.end_outer_step(outer, losses, opt_model, learner.routing())
    return log


def _env_subset(learner, batch, size):
    """All environments, or a uniform random subset drawn from the run's generator."""
    if not size or size >= batch.n_envs:
        return None
    return torch.randperm(batch.n_envs, generator=learner.generator)[:size]


def train_joint(
    learner, batch, cfg: dict, checkpoint: Path | None = None, clip_grad_norm: float | None = None
) -> TrainLog:
    """Joint minimisation: ONE optimiser steps every parameter of ``learner`` at once.

    The baselines that do not alternate (one-for-all, CoDA, CAVIA) use this loop. An outer
    step is ``n_ctx + n_model`` steps (the gradient budget of one alternating outer step), each
    on ``learner.loss(batch, envs)``; the model's learning rate follows the same step schedule
    as the alternating loop, the contexts (if any) keep ``lr_ctx``. Checkpoints, logging and
    :class:`Diverged` behave as in :func:`train_alternating`.

    Args:
        learner: exposes ``context_parameters()`` (may be empty), ``model_parameters()``,
            ``loss(batch, envs)``, ``log_extras()``, ``start_outer_step(outer, n_outer)``,
            ``state_dict()``, ``load_state_dict()`` and
            a ``generator``.
        clip_grad_norm: clip the global gradient norm to this before every step (None: off).
    """
    groups = [{"params": learner.model_parameters(), "lr": cfg["lr_model"]}]
    ctx_params = learner.context_parameters()
    if ctx_params:
        groups.append({"params": ctx_params, "lr": cfg["lr_ctx"]})
    opt = make_optimizer(cfg["optimizer"], groups, cfg["lr_model"])
    everything = [p for group in groups for p in group["params"]]
    run = RunState(learner, cfg, {"opt": opt}, checkpoint)
    log = run.log
    n_outer, n_steps = cfg["outer_steps"], cfg["n_ctx"] + cfg["n_model"]
    for outer in run.outer_steps():
        learner.start_outer_step(outer, n_outer)
        opt.param_groups[0]["lr"] = cfg["lr_model"] * lr_factor(cfg, outer, n_outer)
        losses = []
        for _ in range(n_steps):
            envs = _env_subset(learner, batch, cfg.get("env_batch"))
            opt.zero_grad(set_to_none=True)
            loss = learner.loss(batch, envs)
            loss.backward()
            if clip_grad_norm is not None:  # the global norm of every gradient, as CoDA's code
                torch.nn.utils.clip_grad_norm_(everything, clip_grad_norm, foreach=True)
            opt.step()
            log.inner_steps += 1
            losses.append(loss.detach())
        run.end_outer_step(outer, losses, opt, None)
    return log
