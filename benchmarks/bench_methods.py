"""Cost of one training step of every registered method on the same data.

Lotka-Volterra (9 training environments x 4 trajectories x 20 points), width 64, depth 3,
RK4, one thread. A "step" is one gradient step of the method's loop (an inner step of the
alternating loop, refits included, or one meta-update for CAVIA), averaged over
``--outer`` outer steps after one warm-up outer step.

    python benchmarks/bench_methods.py [--outer 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time

import torch

from mixer.batch import make_batch
from mixer.cells import resolve_method
from mixer.config import validate_config, validate_dataset_spec
from mixer.data import generate, load_dataset, save_dataset
from mixer.methods import learner_class

METHODS = {
    "one-for-all": {"learner": "one-for-all"},
    "coda": {"learner": "coda", "context_dim": 2},
    "cavia": {"learner": "cavia", "context_dim": 3},
    "ncf": {"learner": "ncf", "context_dim": 3},
    "single": {"learner": "single", "backbone": "geps", "context_dim": 2},
    "mixer": {"learner": "mixer", "backbone": "geps", "n_experts": 3, "context_dim": 3,
              "split_context": False},
    "moe-gd": {"learner": "moe-gd", "backbone": "geps", "n_experts": 3, "context_dim": 3,
               "split_context": False},
}  # fmt: skip


def fit_seconds(learner, train) -> tuple[float, int]:
    """Seconds and inner steps of ``learner.fit(train)`` (the learner built beforehand)."""
    began = time.perf_counter()
    log = learner.fit(train)
    if learner.device.type == "cuda":
        torch.cuda.synchronize(learner.device)
    return time.perf_counter() - began, log.inner_steps


def outer_step_cost(make_learner, train, outer: int, base: int = 1):
    """(seconds, inner steps) of ``outer`` outer steps, and the learner of the longer run.

    ``make_learner(n)`` builds a fresh learner whose training runs n outer steps. The difference
    of a run of ``base`` and one of ``base + outer`` outer steps removes the set-up cost both
    share; warm up the code paths before (a throwaway run), or the first run pays for it.
    """
    short = fit_seconds(make_learner(base), train)
    learner = make_learner(base + outer)
    long = fit_seconds(learner, train)
    return long[0] - short[0], long[1] - short[1], learner


def method_learner(name, entry, n_envs, device, outer):
    config = validate_config(
        {"training": {"outer_steps": outer, "checkpoint_every": 0}, "methods": {name: entry}}
    )
    cfg = resolve_method(config, name)
    return learner_class(cfg["learner"])(cfg, 2, n_envs, device, seed=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outer", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    spec = validate_dataset_spec("lv", {"generator": "ode", "systems": ["lotka_volterra"]})
    folder = tempfile.mkdtemp(prefix="bench_methods_")
    splits, envs, extra = generate(spec)
    save_dataset(folder, splits, envs, {"dataset": "lv", "generator": spec, **extra})
    dataset = load_dataset(folder)
    train = make_batch(dataset, "train", {}, device)
    print(f"device {device}, torch {torch.__version__}, 1 thread, LV 9 x 4 x 20")
    print(f"{'method':>12} {'s/step':>9} {'steps/s':>8}")
    for name, entry in METHODS.items():
        make_learner = functools.partial(method_learner, name, entry, train.n_envs, device)
        fit_seconds(make_learner(1), train)  # throwaway: warms up the code paths
        seconds, steps, _ = outer_step_cost(make_learner, train, args.outer)
        per_step = seconds / steps
        print(f"{name:>12} {per_step:9.4f} {1 / per_step:8.2f}", flush=True)


if __name__ == "__main__":
    main()
