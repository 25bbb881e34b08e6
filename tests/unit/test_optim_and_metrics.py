"""The optimisers (AdaBelief formula, per-expert masking) and the scoring functions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from mixer.stages.metrics import routing_purity, routing_scores, routing_settled_step
from mixer.training.optim import MaskedAdaptive, mark_expert_stacked, step_schedule_factor


def test_adabelief_first_steps_follow_the_formula():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = MaskedAdaptive([p], lr=0.1, betas=(0.9, 0.999), eps=1e-16, belief=True)
    grads = [torch.tensor([0.5, -1.0]), torch.tensor([0.2, 0.3])]
    m = s = torch.zeros(2, dtype=torch.float64)
    expected = p.detach().clone()
    for step, g in enumerate(grads, start=1):
        g = g.double()
        p.grad = g.clone()
        opt.step()
        m = 0.9 * m + 0.1 * g
        s = 0.999 * s + 0.001 * (g - m) ** 2 + 1e-16
        m_hat, s_hat = m / (1 - 0.9**step), s / (1 - 0.999**step)
        expected = expected - 0.1 * m_hat / (s_hat.sqrt() + 1e-16)
        torch.testing.assert_close(p.detach(), expected)


@pytest.mark.parametrize("belief", [True, False])
def test_unrouted_expert_rows_do_not_move_nor_age(belief):
    w = mark_expert_stacked(torch.nn.Parameter(torch.ones(3, 2)))
    opt = MaskedAdaptive([w], lr=0.1, belief=belief)
    for active in ([True, True, True], [True, False, True], [True, False, True]):
        w.grad = torch.ones(3, 2)
        before = w.detach().clone()
        opt.step(torch.tensor(active))
        moved = (w.detach() != before).any(dim=1)
        assert moved.tolist() == active
    assert opt.state[w]["t"].tolist() == [3.0, 1.0, 3.0]


def _two_group_run(state=None, steps=3):
    torch.manual_seed(0)
    w = mark_expert_stacked(torch.nn.Parameter(torch.randn(3, 4, dtype=torch.float64)))
    b = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    opt = MaskedAdaptive([{"params": [w], "lr": 0.1}, {"params": [b], "lr": 0.05}], lr=0.1)
    if state is not None:
        opt.load_state_dict(state)
    for i in range(steps):
        opt.zero_grad(set_to_none=True)
        ((w**2).sum() + (b**3).sum()).backward()
        opt.step(torch.tensor([True, False, i % 2 == 0]))
    return opt


def test_state_dict_round_trip_resumes_identically():
    """A checkpointed optimiser, loaded into a fresh one, continues exactly as the original."""
    full = _two_group_run(steps=5)
    first = _two_group_run(steps=3)
    saved = first.state_dict()
    assert [g["params"] for g in saved["param_groups"]] == [[0], [1]]  # torch's layout
    assert saved["param_groups"][1]["lr"] == 0.05
    resumed = MaskedAdaptive(
        [{"params": first.param_groups[0]["params"]}, {"params": first.param_groups[1]["params"]}]
    )
    resumed.load_state_dict(saved)
    w, b = resumed.param_groups[0]["params"][0], resumed.param_groups[1]["params"][0]
    for i in range(3, 5):
        resumed.zero_grad(set_to_none=True)
        ((w**2).sum() + (b**3).sum()).backward()
        resumed.step(torch.tensor([True, False, i % 2 == 0]))
    torch.testing.assert_close(w, full.param_groups[0]["params"][0], rtol=0, atol=0)
    torch.testing.assert_close(b, full.param_groups[1]["params"][0], rtol=0, atol=0)
    assert resumed.state[w]["t"].tolist() == [5.0, 0.0, 3.0]
    with pytest.raises(ValueError, match="parameter groups of sizes"):
        MaskedAdaptive([w]).load_state_dict(saved)


def test_building_an_optimiser_does_not_import_torch_dynamo():
    """torch.optim.Optimizer imports torch._dynamo (seconds) when built; every job would pay it."""
    code = (
        "import sys, torch; from mixer.training.optim import make_optimizer;"
        "p = torch.nn.Parameter(torch.zeros(2)); opt = make_optimizer('adabelief', [p], 0.1);"
        "p.grad = torch.ones(2); opt.step(); opt.zero_grad();"
        "opt.load_state_dict(opt.state_dict());"
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_reset_expert_state_forgets_stacked_moments_only():
    w = mark_expert_stacked(torch.nn.Parameter(torch.ones(3, 2)))
    shared = torch.nn.Parameter(torch.ones(2))
    opt = MaskedAdaptive([w, shared], lr=0.1, belief=False)  # Adam: first step = lr·sign(g)
    for _ in range(2):
        w.grad, shared.grad = torch.randn(3, 2), torch.randn(2)
        opt.step(torch.tensor([True, True, False]))
    shared_state = {k: v.clone() for k, v in opt.state[shared].items()}
    opt.reset_expert_state()
    for key in ("m", "s", "t"):
        assert opt.state[w][key].abs().sum() == 0, key
        assert torch.equal(opt.state[shared][key], shared_state[key]), key
    # The next step is a first step again (bias correction from t = 1).
    w.grad = torch.full((3, 2), 0.5)
    before = w.detach().clone()
    opt.step(torch.tensor([True, True, True]))
    assert torch.allclose(before - w.detach(), torch.full((3, 2), 0.1), atol=1e-4)
    assert opt.state[w]["t"].tolist() == [1.0, 1.0, 1.0]


def test_schedule_drops_at_one_and_two_thirds():
    factors = [step_schedule_factor(s, 30) for s in (0, 9, 10, 19, 20, 29)]
    assert factors == pytest.approx([1, 1, 0.4, 0.4, 0.16, 0.16])


def test_routing_scores():
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert routing_purity(np.array([2, 2, 0, 0, 1, 1]), labels) == 1.0
    assert routing_purity(np.array([0, 0, 0, 0, 1, 1]), labels) == pytest.approx(4 / 6)
    scores = routing_scores([1, 1, 1, 1, 1, 1], labels)
    assert scores["routing_ari"] == 0.0 and scores["experts_used"] == 1
    assert scores["routing_purity"] == pytest.approx(2 / 6)


def test_routing_settled_step():
    trace = np.array([[0, 0], [1, 0], [1, 0], [1, 2], [1, 2]])
    assert routing_settled_step(trace) == 4  # final routing first seen after outer step 4
    assert routing_settled_step(np.zeros((4, 3))) == 1


def test_progress_lines_every_tenth_of_the_run_and_a_bar_on_a_terminal():
    import io

    from mixer.training.progress import report, reporting

    rows = [{"outer_step": k, "loss": 1.0 / k, "seconds": 0.5 * k} for k in range(1, 21)]
    plain = io.StringIO()
    with reporting("mixer seed 0", stream=plain):
        for row in rows:
            report(row, 20)
    lines = plain.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"mixer seed 0: outer step {k}/20" for k in (2, 4, 6, 8, 10, 12, 14, 16, 18, 20)
    ]
    assert lines[-1] == "mixer seed 0: outer step 20/20, loss 0.05, 10.0 s"
    report(rows[0], 20)  # outside a reporting block: nothing, no error

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    with reporting("mixer seed 0", stream=tty):
        for row in rows:
            report(row, 20)
    assert "20/20" in tty.getvalue() and "loss=0.05" in tty.getvalue()


def test_a_context_gone_nan_is_diverged_even_with_a_finite_loss():
    """A split context's chunk that the routed expert does not read can become NaN while the
    loss stays finite (a findings cell, issue 22): the outer step's check says diverged."""
    import time
    from types import SimpleNamespace

    from mixer.training.bookkeeping import Diverged, TrainLog, end_outer_step

    contexts = torch.zeros(3, 4)
    learner = SimpleNamespace(context_parameters=lambda: [contexts], log_extras=dict)
    opt = SimpleNamespace(param_groups=[{"lr": 1e-3}])
    losses = [torch.tensor(0.5), torch.tensor(0.25)]
    log = TrainLog()
    end_outer_step(log, 0, losses, time.perf_counter(), opt, learner, None, 2)
    assert log.rows[-1]["loss"] == 0.375
    contexts[1, 2] = float("nan")
    with pytest.raises(Diverged, match="1 context entries became NaN or inf at outer step 2"):
        end_outer_step(log, 1, losses, time.perf_counter(), opt, learner, None, 2)
