"""Proximal alternating minimisation (METHOD.md §3.1), with checkpoints and divergence handling.

The loop is generic over a learner that exposes its context and model parameters, a loss,
and hooks (gate refit, routing record). One outer step:

    Ξ_old, θ_old ← copies
    n_ctx   times: Ξ ← opt_ctx step on L(θ, Ξ) + β_ξ/2 ||Ξ − Ξ_old||²   (hook after each inner step)
    n_model times: θ ← opt_θ   step on L(θ, Ξ) + β_θ/2 ||θ − θ_old||²   (hook after each inner step)

The proximal terms are plain squared distances (not divided by the parameter count, which
made them negligible in the reference code). Host synchronisation happens once per outer
step, where the loss is logged and checked for NaN/inf.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mixer.optim import make_optimizer, step_schedule_factor


class Diverged(Exception):
    """The training loss became NaN or infinite."""


@dataclass
class TrainLog:
    rows: list[dict] = field(default_factory=list)
    routing: list[list[int]] = field(default_factory=list)
    seconds: float = 0.0
    inner_steps: int = 0

    def write_csv(self, path: Path) -> None:
        if not self.rows:
            return
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, path)


def _proximal(params, anchors):
    return sum(((p - a) ** 2).sum() for p, a in zip(params, anchors, strict=True))


def train_alternating(learner, batch, cfg: dict, checkpoint: Path | None = None) -> TrainLog:
    """Train ``learner`` on ``batch`` (all training environments) and return its log.

    Args:
        learner: exposes ``context_parameters()``, ``model_parameters()``, ``loss(batch, envs)``,
            ``after_inner_step(batch, inner_step)``, ``active_experts()``, ``routing()``,
            ``start_outer_step(outer, n_outer)``, ``state_dict()``/``load_state_dict()``;
            optionally ``attach_optimizers(opt_ctx, opt_model)``, called once the optimisers
            exist (and after a resume).
        cfg: the method's ``training`` block (outer_steps, n_ctx, n_model, lr_ctx, lr_model,
            optimizer, proximal_ctx, proximal_model, env_batch, checkpoint_every).
        checkpoint: file to resume from and to write every ``checkpoint_every`` outer steps.

    Raises:
        Diverged: when the loss becomes non-finite (the caller records the status).
    """
    ctx_params, model_params = learner.context_parameters(), learner.model_parameters()
    opt_ctx = make_optimizer(cfg["optimizer"], ctx_params, cfg["lr_ctx"])
    opt_model = make_optimizer(cfg["optimizer"], model_params, cfg["lr_model"])
    log = TrainLog()
    start = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        learner.load_state_dict(state["learner"])
        opt_ctx.load_state_dict(state["opt_ctx"])
        opt_model.load_state_dict(state["opt_model"])
        log = state["log"]
        start = state["outer_step"]
        learner.generator.set_state(state["generator"])
        print(f"resumed from {checkpoint} at outer step {start}", file=sys.stderr, flush=True)
    attach = getattr(learner, "attach_optimizers", None)
    if attach is not None:
        attach(opt_ctx, opt_model)
    n_outer = cfg["outer_steps"]
    for outer in range(start, n_outer):
        began = time.perf_counter()
        learner.start_outer_step(outer, n_outer)
        for group in opt_model.param_groups:
            group["lr"] = cfg["lr_model"] * step_schedule_factor(outer, n_outer)
        losses = []
        for params, opt, n_inner, beta in (
            (ctx_params, opt_ctx, cfg["n_ctx"], cfg["proximal_ctx"]),
            (model_params, opt_model, cfg["n_model"], cfg["proximal_model"]),
        ):
            anchors = [p.detach().clone() for p in params]
            for _ in range(n_inner):
                envs = _env_subset(learner, batch, cfg.get("env_batch"))
                opt_ctx.zero_grad(set_to_none=True)
                opt_model.zero_grad(set_to_none=True)
                loss = learner.loss(batch, envs)
                (loss + 0.5 * beta * _proximal(params, anchors)).backward()
                opt.step(learner.active_experts() if opt is opt_model else None)
                log.inner_steps += 1
                learner.after_inner_step(batch, log.inner_steps)
                losses.append(loss.detach())
        mean_loss = torch.stack(losses).mean().item()  # the one host sync of the outer step
        log.seconds += time.perf_counter() - began
        if not math.isfinite(mean_loss):
            raise Diverged(f"loss became {mean_loss} at outer step {outer + 1}")
        routing = learner.routing()
        log.routing.append(routing.tolist() if routing is not None else [])
        log.rows.append(
            {
                "outer_step": outer + 1,
                "inner_steps": log.inner_steps,
                "loss": mean_loss,
                "lr_model": opt_model.param_groups[0]["lr"],
                "seconds": round(log.seconds, 4),
                **learner.log_extras(),
            }
        )
        every = cfg.get("checkpoint_every") or 0
        if checkpoint is not None and every and (outer + 1) % every == 0 and outer + 1 < n_outer:
            _save_checkpoint(checkpoint, learner, opt_ctx, opt_model, log, outer + 1)
    return log


def _env_subset(learner, batch, size):
    """All environments, or a uniform random subset drawn from the run's generator."""
    if not size or size >= batch.n_envs:
        return None
    return torch.randperm(batch.n_envs, generator=learner.generator)[:size]


def _save_checkpoint(path: Path, learner, opt_ctx, opt_model, log, outer_step):
    state = {
        "learner": learner.state_dict(),
        "opt_ctx": opt_ctx.state_dict(),
        "opt_model": opt_model.state_dict(),
        "log": log,
        "outer_step": outer_step,
        "generator": learner.generator.get_state(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train_joint(learner, batch, cfg: dict, checkpoint: Path | None = None) -> TrainLog:
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
    """
    groups = [{"params": learner.model_parameters(), "lr": cfg["lr_model"]}]
    ctx_params = learner.context_parameters()
    if ctx_params:
        groups.append({"params": ctx_params, "lr": cfg["lr_ctx"]})
    opt = make_optimizer(cfg["optimizer"], groups, cfg["lr_model"])
    log = TrainLog()
    start = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        learner.load_state_dict(state["learner"])
        opt.load_state_dict(state["opt"])
        log = state["log"]
        start = state["outer_step"]
        learner.generator.set_state(state["generator"])
        print(f"resumed from {checkpoint} at outer step {start}", file=sys.stderr, flush=True)
    n_outer, n_steps = cfg["outer_steps"], cfg["n_ctx"] + cfg["n_model"]
    for outer in range(start, n_outer):
        began = time.perf_counter()
        learner.start_outer_step(outer, n_outer)
        opt.param_groups[0]["lr"] = cfg["lr_model"] * step_schedule_factor(outer, n_outer)
        losses = []
        for _ in range(n_steps):
            envs = _env_subset(learner, batch, cfg.get("env_batch"))
            opt.zero_grad(set_to_none=True)
            loss = learner.loss(batch, envs)
            loss.backward()
            opt.step()
            log.inner_steps += 1
            losses.append(loss.detach())
        mean_loss = torch.stack(losses).mean().item()
        log.seconds += time.perf_counter() - began
        if not math.isfinite(mean_loss):
            raise Diverged(f"loss became {mean_loss} at outer step {outer + 1}")
        log.routing.append([])
        log.rows.append(
            {
                "outer_step": outer + 1,
                "inner_steps": log.inner_steps,
                "loss": mean_loss,
                "lr_model": opt.param_groups[0]["lr"],
                "seconds": round(log.seconds, 4),
                **learner.log_extras(),
            }
        )
        every = cfg.get("checkpoint_every") or 0
        if checkpoint is not None and every and (outer + 1) % every == 0 and outer + 1 < n_outer:
            state = {
                "learner": learner.state_dict(),
                "opt": opt.state_dict(),
                "log": log,
                "outer_step": outer + 1,
                "generator": learner.generator.get_state(),
            }
            tmp = checkpoint.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, checkpoint)
    return log
