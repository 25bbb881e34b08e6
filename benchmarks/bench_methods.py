"""Cost of one training step of every registered method on the same data.

Lotka-Volterra (9 training environments x 4 trajectories x 20 points), width 64, depth 3,
RK4, one thread. A "step" is one gradient step of the method's loop (an inner step of the
alternating loop, refits included, or one meta-update for CAVIA), averaged over
``--outer`` outer steps after one warm-up outer step.

    python benchmarks/bench_methods.py [--outer 2] [--device cpu]
"""

from __future__ import annotations

import argparse
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
        seconds = []
        # A throwaway first run warms up the code paths; the difference of the next two runs
        # removes the set-up cost shared by both.
        for outer in (1, 1, 1 + args.outer):
            config = validate_config(
                {"training": {"outer_steps": outer, "checkpoint_every": 0},
                 "methods": {name: entry}}
            )  # fmt: skip
            cfg = resolve_method(config, name)
            learner = learner_class(cfg["learner"])(cfg, 2, train.n_envs, device, seed=0)
            began = time.perf_counter()
            log = learner.fit(train)
            seconds.append((time.perf_counter() - began, log.inner_steps))
        per_step = (seconds[2][0] - seconds[1][0]) / (seconds[2][1] - seconds[1][1])
        print(f"{name:>12} {per_step:9.4f} {1 / per_step:8.2f}", flush=True)


if __name__ == "__main__":
    main()
