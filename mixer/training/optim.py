"""Optimisers for the alternating loops: AdaBelief (the paper's choice) and Adam, written here.

Both keep their moments per element and, for parameters stacked over experts (leading dim K,
marked by :func:`mark_expert_stacked`), advance an expert's moments and step count only on
steps where that expert was routed to. An expert that received no data simply does not move:
the reference code's single shared optimiser state advanced every expert (and the schedule)
on every step (docs/METHOD.md §6, defect 6).

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
        """One update of every parameter with a gradient, in place and without host syncs.

        An expert-stacked parameter's rows are masked through per-row interpolation
        weights: a row of an inactive expert gets weight 0, so its moments and value stay
        exactly as they are, with no ``where`` and no temporary copies of the moments.
        """
        for group in self.param_groups:
            beta1, beta2, eps, lr = group["betas"] + (group["eps"], group["lr"])
            belief = group["belief"]
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if p not in self.state:
                    rows = p.shape[0] if is_expert_stacked(p) else 1
                    self.state[p] = {
                        "m": torch.zeros_like(p),
                        "s": torch.zeros_like(p),
                        "t": torch.zeros(rows, dtype=p.dtype, device=p.device),
                    }
            states = [self.state[p] for p in params]
            ts = [state["t"] for state in states]
            mask = None
            if active_experts is not None:
                mask = active_experts.to(ts[0].dtype) if ts else None
            # Step counts: +1, or +mask on the rows of expert-stacked parameters.
            plain = [i for i, p in enumerate(params) if mask is None or not is_expert_stacked(p)]
            if plain:
                torch._foreach_add_([ts[i] for i in plain], 1.0)
            for i in range(len(params)):
                if i not in plain:
                    ts[i].add_(mask.to(ts[i].device))
            for p, state, t in zip(params, states, ts, strict=True):
                g, m, s = p.grad, state["m"], state["s"]
                view = (-1,) + (1,) * (p.dim() - 1) if t.numel() > 1 else ()
                if mask is not None and is_expert_stacked(p):
                    on = mask.to(p.device).view(view)
                    w1, w2 = (1 - beta1) * on, (1 - beta2) * on
                else:
                    on, w1, w2 = None, 1 - beta1, 1 - beta2
                m.lerp_(g, w1)  # m ← β1 m + (1 − β1) g
                second = g - m if belief else g.clone()
                second.mul_(second)
                if belief:  # s ← β2 s + (1 − β2)(g − m)² + ε
                    second.add_(eps / (1 - beta2))
                s.lerp_(second, w2)
                t_now = t.clamp(min=1)
                scale = lr / (1 - beta1**t_now)
                root_bias = (1 - beta2**t_now).sqrt()
                if on is not None:
                    scale = scale * on.view(-1)
                denom = s.sqrt().div_(root_bias.view(view) if view else root_bias).add_(eps)
                step = m / denom
                p.sub_(step.mul_(scale.view(view) if view else scale))

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


def lr_factor(cfg: dict, outer_step: int, n_outer: int) -> float:
    """The model's learning-rate multiplier at ``outer_step`` under the training block's
    ``lr_schedule``: 'step' (:func:`step_schedule_factor`) or 'constant' (1)."""
    if cfg.get("lr_schedule", "step") == "constant":
        return 1.0
    return step_schedule_factor(outer_step, n_outer)


def step_schedule_factor(outer_step: int, n_outer: int, drops=(1 / 3, 2 / 3), factor=0.4):
    """Learning-rate multiplier: x factor at each fraction of training in ``drops``."""
    passed = sum(outer_step >= round(d * n_outer) for d in drops)
    return factor**passed
