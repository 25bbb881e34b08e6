"""The proximal terms of the alternating loop (docs/METHOD.md §3.1, §6 item 5), checked
through ``train_alternating`` itself: the gradient each inner step hands the optimiser is
the loss gradient plus β s (p − p_old), s = 1/N for ``mean`` (N: entries of the whole group,
as the reference's ``params_diff_norm_squared``) and 1 for ``sum``."""

from __future__ import annotations

import pytest
import torch

from mixer.training.loops import proximal_scales, train_alternating
from tests.helpers import validated_copy

torch.set_num_threads(1)

BETA_CTX, BETA_MODEL = 10.0, 4.0


class LinearLoss:
    """L = Σ_t <c_t, p_t> over a context tensor [4, 2] and two model tensors of different
    sizes ([3, 2] and [2]), so the loss gradient is the constant c_t and anything else in the
    gradient is the proximal term. Records, at every inner step, the values the loss saw and
    the gradient the optimiser stepped with."""

    def __init__(self):
        self.generator = torch.Generator().manual_seed(0)
        self.device = torch.device("cpu")
        gen = torch.Generator().manual_seed(1)
        self.ctx = torch.nn.Parameter(torch.randn(4, 2, generator=gen))
        self.w = torch.nn.Parameter(torch.randn(3, 2, generator=gen))
        self.b = torch.nn.Parameter(torch.randn(2, generator=gen))
        self.coef = {id(p): torch.randn(p.shape, generator=gen) for p in self.params()}
        self.steps: list[dict] = []
        self._seen = None

    def params(self):
        return [self.ctx, self.w, self.b]

    def context_parameters(self):
        return [self.ctx]

    def model_parameters(self):
        return [self.w, self.b]

    def loss(self, batch, envs=None):
        self._seen = [p.detach().clone() for p in self.params()]
        return sum((self.coef[id(p)] * p).sum() for p in self.params())

    def after_inner_step(self, batch, inner_step):
        grads = [None if p.grad is None else p.grad.detach().clone() for p in self.params()]
        self.steps.append({"seen": self._seen, "grad": grads})

    def active_experts(self):
        return None

    def routing(self):
        return None

    def start_outer_step(self, outer, n_outer):
        pass

    def log_extras(self):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def run_loop(norm: str, n_inner: int = 3):
    learner = LinearLoss()
    cfg = {
        "outer_steps": 1,
        "n_ctx": n_inner,
        "n_model": n_inner,
        "lr_ctx": 0.1,
        "lr_model": 0.1,
        "optimizer": "adam",
        "proximal_ctx": BETA_CTX,
        "proximal_model": BETA_MODEL,
        "proximal_norm": norm,
        "env_batch": None,
        "checkpoint_every": 0,
    }
    train_alternating(learner, batch=None, cfg=cfg)
    return learner


def hand_gradients(learner, phase_steps, group: list[int], beta: float, scale: float):
    """Per inner step of one phase: c + β·scale·(p_seen − p_at_phase_start), by hand."""
    anchor = phase_steps[0]["seen"]
    params = learner.params()
    out = []
    for step in phase_steps:
        out.append(
            {
                i: learner.coef[id(params[i])] + beta * scale * (step["seen"][i] - anchor[i])
                for i in group
            }
        )
    return out


# Group sizes: contexts 4·2 = 8 entries; model 3·2 + 2 = 8 entries in two tensors of 6 and 2.
# mean: one scale 1/8 for both model tensors (the old per-tensor mean gave 1/6 and 1/2).
SCALES = {"mean": (1 / 8, 1 / 8), "sum": (1.0, 1.0)}


@pytest.mark.parametrize("norm", ["mean", "sum"])
def test_proximal_gradient_matches_the_hand_value(norm):
    n = 3
    learner = run_loop(norm, n)
    assert len(learner.steps) == 2 * n
    ctx_steps, model_steps = learner.steps[:n], learner.steps[n:]
    scale_ctx, scale_model = SCALES[norm]
    for phase, group, beta, scale in (
        (ctx_steps, [0], BETA_CTX, scale_ctx),
        (model_steps, [1, 2], BETA_MODEL, scale_model),
    ):
        expected = hand_gradients(learner, phase, group, beta, scale)
        for k, (step, want) in enumerate(zip(phase, expected, strict=True)):
            for i in group:
                torch.testing.assert_close(step["grad"][i], want[i], rtol=1e-5, atol=1e-6)
            if k == 0:
                continue
            # After the first step the parameters have moved, so the proximal part is not
            # negligible: switching it off, or using another scale, changes the gradient.
            for i in group:
                pull = beta * scale * (step["seen"][i] - phase[0]["seen"][i])
                assert pull.abs().max() > 1e-2, (norm, k, i)


def test_mean_divides_once_by_the_group_size_not_per_tensor():
    model = [torch.zeros(3, 2), torch.zeros(2)]
    assert proximal_scales(model, "mean") == [1 / 8, 1 / 8]
    assert proximal_scales(model, "sum") == [1.0, 1.0]
    assert proximal_scales([torch.zeros(4, 2)], "mean") == [1 / 8]
    with pytest.raises(ValueError, match="valid: sum, mean"):
        proximal_scales(model, "per-tensor")


def test_the_other_phase_group_gets_no_proximal_nor_gradient():
    learner = run_loop("mean", 2)
    for step in learner.steps[:2]:  # context phase: the model has no gradient
        assert step["grad"][1] is None and step["grad"][2] is None
    for step in learner.steps[2:]:  # model phase: the contexts' gradient was cleared
        assert step["grad"][0] is None


def test_the_paper_setting_is_the_schema_default():
    training = validated_copy({"device": "cpu"})["training"]
    assert training["proximal_norm"] == "mean"
    assert training["proximal_ctx"] == 10.0 and training["proximal_model"] == 10.0
