"""Optimisers for the alternating loops: AdaBelief (the paper's choice) and Adam, written here.

Both keep their moments per element and, for parameters stacked over experts (leading dim K,
marked by :func:`mark_expert_stacked`), advance an expert's moments and step count only on
steps where that expert was routed to. An expert that received no data simply does not move:
the reference code's single shared optimiser state advanced every expert (and the schedule)
on every step (METHOD.md §6, defect 6).

The optimiser does not subclass ``torch.optim.Optimizer``: constructing one of those imports
``torch._dynamo`` (2-3 s of CPU), which every training and evaluation job would pay. It keeps
the same surface the loops use (``param_groups``, ``state``, ``zero_grad``, ``state_dict``
in torch's layout, so checkpoints written by earlier versions still load).
"""

from __future__ import annotations

import torch


def mark_expert_stacked(param: torch.Tensor) -> torch.Tensor:
    param._expert_stacked = True  # a tag read by the optimiser
    return param


def is_expert_stacked(param: torch.Tensor) -> bool:
    return getattr(param, "_expert_stacked", False)


class MaskedAdaptive:
    """Adam or AdaBelief with per-expert masking.

    Args:
        params: parameters to optimise.
        lr: learning rate (changed by the caller's schedule through ``param_groups``).
        betas, eps: the usual moment decay rates and denominator guard.
        belief: True for AdaBelief (second moment of g - m), False for Adam (of g).

    ``step(active_experts)`` takes a bool tensor [K]: rows of expert-stacked parameters with
    ``False`` keep their values and moments. Other parameters always update.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-16, belief=True):
        if not belief and eps == 1e-16:
            eps = 1e-8  # Adam's customary guard; AdaBelief's 1e-16 follows its paper
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "belief": belief}
        groups = list(params)
        if not groups:
            raise ValueError("MaskedAdaptive got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[torch.Tensor, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        """Torch's layout: parameters replaced by their index over all groups, in order."""
        index = {id(p): i for i, p in enumerate(self._params())}
        groups, start = [], 0
        for group in self.param_groups:
            n = len(group["params"])
            groups.append({**group, "params": list(range(start, start + n))})
            start += n
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict) -> None:
        params = self._params()
        sizes = [len(g["params"]) for g in saved["param_groups"]]
        if sizes != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(
                f"optimizer state has parameter groups of sizes {sizes}, "
                f"this optimizer {[len(g['params']) for g in self.param_groups]}"
            )
        for group, stored in zip(self.param_groups, saved["param_groups"], strict=True):
            group.update({k: v for k, v in stored.items() if k != "params"})
        self.state = {
            params[int(i)]: {k: v.to(params[int(i)].device) for k, v in s.items()}
            for i, s in saved["state"].items()
        }

    @torch.no_grad()
    def step(self, active_experts: torch.Tensor | None = None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, {})
                stacked = is_expert_stacked(p) and active_experts is not None
                if not state:
                    state["m"] = torch.zeros_like(p)
                    state["s"] = torch.zeros_like(p)
                    rows = p.shape[0] if is_expert_stacked(p) else 1
                    state["t"] = torch.zeros(rows, dtype=p.dtype, device=p.device)
                g = p.grad
                m = state["m"].mul(beta1).add_(g, alpha=1 - beta1)
                second = (g - m) if group["belief"] else g
                s = state["s"].mul(beta2).addcmul_(second, second, value=1 - beta2)
                if group["belief"]:
                    s.add_(group["eps"])
                t = state["t"] + 1
                if stacked:
                    mask = active_experts.to(p.device)
                    t = torch.where(mask, t, state["t"])
                    view = (-1,) + (1,) * (p.dim() - 1)
                    row_mask = mask.view(view)
                    m = torch.where(row_mask, m, state["m"])
                    s = torch.where(row_mask, s, state["s"])
                bias1 = 1 - beta1 ** t.clamp(min=1)
                bias2 = 1 - beta2 ** t.clamp(min=1)
                if is_expert_stacked(p):
                    shape = (-1,) + (1,) * (p.dim() - 1)
                    bias1, bias2 = bias1.view(shape), bias2.view(shape)
                update = (m / bias1) / ((s / bias2).sqrt() + group["eps"])
                if stacked:
                    update = update * row_mask
                p.sub_(group["lr"] * update)
                state["m"], state["s"], state["t"] = m, s, t

    @torch.no_grad()
    def reset_expert_state(self) -> None:
        """Forget the moments and step counts of every expert-stacked parameter (all rows).

        Used when the experts are re-initialised (e.g. cloned from one expert): each expert
        then starts its own Adam/AdaBelief history, as a freshly built optimiser would.
        """
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if is_expert_stacked(p) and state:
                    state["m"].zero_()
                    state["s"].zero_()
                    state["t"].zero_()


def make_optimizer(name: str, params, lr: float) -> MaskedAdaptive:
    if name not in ("adabelief", "adam"):
        from mixer.errors import ConfigError

        raise ConfigError(f"unknown optimizer '{name}'. Valid optimizers: adabelief, adam")
    return MaskedAdaptive(params, lr=lr, belief=name == "adabelief")


def step_schedule_factor(outer_step: int, n_outer: int, drops=(1 / 3, 2 / 3), factor=0.4):
    """Learning-rate multiplier: x factor at each fraction of training in ``drops``."""
    passed = sum(outer_step >= round(d * n_outer) for d in drops)
    return factor**passed
