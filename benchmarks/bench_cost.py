"""Cost of MixER training: seconds per inner training step (refits excluded) and per gate refit.

Sweeps K in {1, 3, 10, 20} at E = 40 environments and E in {10, 40, 160} at K = 10, for the
geps and ncf backbones, on synthetic trajectories (N = 4, T = 20, d = 2, width 64, depth 3,
RK4). Each figure is the median of ``--repeats`` calls. Ends with ``step_time_ratio_k20_k1
<value>`` (geps, E = 40; the median of three interleaved K = 1 / K = 20 pairs): top-1
routing should keep it near 1 (target <= 1.3).

    python benchmarks/bench_cost.py [--device cpu|cuda] [--repeats 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mixer.config import resolve_method, validate_config
from mixer.methods import learner_class
from mixer.training.batches import EnvBatch
from mixer.training.optim import make_optimizer


def make_learner(backbone, K, E, device):
    config = validate_config(
        {"methods": {"m": {"learner": "mixer", "backbone": backbone, "n_experts": K,
                           "context_dim": 2 * K, "context_init": "random"}}}
    )  # fmt: skip
    cfg = resolve_method(config, "m")
    return learner_class("mixer")(cfg, 2, E, device, seed=0)


def make_batch(E, device, N=4, T=20):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(E, N, T, 2, generator=g).cumsum(dim=2) * 0.1
    t = torch.arange(T, dtype=torch.float32).repeat(E, 1) * 0.5
    return EnvBatch(X.to(device), t.to(device), np.arange(E), np.zeros(E, dtype=int))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_it(fn, repeats, device):
    """Median seconds of ``repeats`` calls after a warm-up: on a shared machine a call that
    lost the CPU to another process moves a mean, not the median."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        began = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def measure(backbone, K, E, device, repeats):
    learner = make_learner(backbone, K, E, device)
    batch = make_batch(E, device)
    # Spread the environments over all experts so that every expert is routed to.
    learner.model.set_gate(torch.randn(2 * K + 1, K, generator=torch.Generator().manual_seed(1)))
    opt = make_optimizer("adabelief", learner.model_parameters(), 1e-3)

    def train_step():
        opt.zero_grad(set_to_none=True)
        learner.loss(batch).backward()
        opt.step(learner.active_experts())

    step = time_it(train_step, repeats, device)
    refit = time_it(lambda: learner.refit_gate(batch), max(repeats // 2, 1), device)
    return step, refit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, 1 thread, {args.repeats} repeats")
    print(f"{'backbone':>8} {'K':>3} {'E':>4} {'s/step':>9} {'s/refit':>9}")
    steps = {}
    for backbone in ("geps", "ncf"):
        cells = [(K, 40) for K in (1, 3, 10, 20)] + [(10, E) for E in (10, 160)]
        for K, E in cells:
            step, refit = measure(backbone, K, E, device, args.repeats)
            steps[backbone, K, E] = step
            print(f"{backbone:>8} {K:>3} {E:>4} {step:9.4f} {refit:9.4f}", flush=True)
    # The ratio from K = 1 and K = 20 timed side by side, three times (the table's figures
    # are minutes apart, and this machine's speed drifts by more than the effect measured).
    pairs = []
    for _ in range(3):
        k1 = measure("geps", 1, 40, device, args.repeats)[0]
        k20 = measure("geps", 20, 40, device, args.repeats)[0]
        pairs.append(k20 / k1)
    ratio = float(np.median(pairs))
    print("interleaved K = 20 / K = 1 ratios: " + " ".join(f"{r:.3f}" for r in pairs))
    print(f"step_time_ratio_k20_k1 {ratio:.3f}")


if __name__ == "__main__":
    main()
