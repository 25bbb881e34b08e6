"""Seconds per forward+backward of a mixture rollout against the number of experts K.

The top-1 mixture should cost the same for every K (only the routed expert's parameters are
gathered); the dense ablation evaluates all K experts and is shown for contrast.

    python benchmarks/bench_models.py [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from mixer.models import build_mixture, rollout

N_ENV, N_TRAJ, N_TIMES, STATE_DIM, CONTEXT_DIM, WIDTH = 40, 4, 20, 2, 2, 64


def seconds_per_step(backbone: str, n_experts: int, dense: bool, repeats: int, device) -> float:
    moe = build_mixture(
        backbone,
        STATE_DIM,
        CONTEXT_DIM,
        n_experts,
        width=WIDTH,
        gate_mode="gd" if dense else "refit",
        dense=dense,
        generator=0,
    ).to(device)
    gen = torch.Generator().manual_seed(1)
    contexts = torch.randn(N_ENV, CONTEXT_DIM, generator=gen).to(device).requires_grad_(True)
    x0 = torch.randn(N_ENV, N_TRAJ, STATE_DIM, generator=gen).to(device)
    t = (0.1 * torch.arange(N_TIMES)).expand(N_ENV, N_TIMES).to(device)
    target = torch.randn(N_ENV, N_TRAJ, N_TIMES, STATE_DIM, generator=gen).to(device)

    def step():
        loss = (rollout(moe.vector_field(contexts), x0, t) - target).square().mean()
        loss.backward()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    ks = (1, 3, 10, 20)
    print(f"E={N_ENV} N={N_TRAJ} T={N_TIMES} d={STATE_DIM} width={WIDTH}, RK4, {device}")
    print("seconds per forward+backward of one rollout")
    print(f"{'backbone':<14}" + "".join(f"{f'K={k}':>10}" for k in ks))
    for backbone in ("ncf", "coda", "geps"):
        for dense in (False, True):
            label = backbone + (" dense" if dense else " top-1")
            row = [seconds_per_step(backbone, k, dense, args.repeats, device) for k in ks]
            print(f"{label:<14}" + "".join(f"{s:>10.4f}" for s in row), flush=True)


if __name__ == "__main__":
    main()
