"""Cost of one training step of every registered method on the same data.

Lotka-Volterra (9 training environments x 4 trajectories x 20 points), width 64, depth 3,
RK4, one thread. A "step" is one gradient step of the method's loop (an inner step of the
alternating loop, refits included, or one meta-update for CAVIA), averaged over
``--outer`` outer steps after one warm-up outer step.

    python benchmarks/bench_methods.py [--outer 2] [--device cpu] [--methods ncf cavia]
    python benchmarks/bench_methods.py --baseline DIR [--repeats 3] [--methods ncf cavia]

``--baseline DIR`` compares with another checkout of the suite (e.g. the commit before a
speed change: ``git worktree add /tmp/base <commit>``): each method is timed in fresh
processes, this tree's and DIR's alternately, ``--repeats`` times each, and the line gives
both medians and their ratio (baseline / this tree, > 1 when this tree is faster).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mixer.config import validate_config, validate_dataset_spec
from mixer.data import generate, load_dataset, save_dataset

try:
    from mixer.config import resolve_method
    from mixer.methods import learner_class
    from mixer.training.batches import make_batch
except ImportError:  # a --baseline tree from before the learner registry (e.g. b012071)
    from mixer.batch import make_batch

    from mixer.config import method_config as resolve_method
    from mixer.methods import method_class as learner_class

ROOT = Path(__file__).resolve().parents[1]

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
    device = getattr(learner, "device", None)
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
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


def lv_train_batch(device):
    spec = validate_dataset_spec("lv", {"generator": "ode", "systems": ["lotka_volterra"]})
    folder = tempfile.mkdtemp(prefix="bench_methods_")
    splits, envs, extra = generate(spec)
    save_dataset(folder, splits, envs, {"dataset": "lv", "generator": spec, **extra})
    return make_batch(load_dataset(folder), "train", {}, device)


def seconds_per_step(name, train, device, outer: int) -> float:
    make_learner = functools.partial(method_learner, name, METHODS[name], train.n_envs, device)
    fit_seconds(make_learner(1), train)  # throwaway: warms up the code paths
    seconds, steps, _ = outer_step_cost(make_learner, train, outer)
    return seconds / steps


def worker_seconds(tree: Path, name: str, args) -> float:
    """s/step of ``name`` timed in a fresh process that imports the suite from ``tree``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
               "--outer", str(args.outer), "--device", args.device]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"worker {name} on {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds_per_step"]


def compare(args) -> None:
    baseline = Path(args.baseline).resolve()
    print(f"this tree {ROOT} vs baseline {baseline}; {args.repeats} alternating fresh "
          f"processes each, medians, 1 thread")  # fmt: skip
    print(f"{'method':>12} {'s/step':>9} {'baseline':>9} {'ratio':>6}  runs (this / baseline)")
    for name in args.methods:
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(worker_seconds(ROOT, name, args))
            theirs.append(worker_seconds(baseline, name, args))
        now, before = statistics.median(ours), statistics.median(theirs)
        runs = " ".join(f"{a:.4f}/{b:.4f}" for a, b in zip(ours, theirs, strict=True))
        print(f"{name:>12} {now:9.4f} {before:9.4f} {before / now:6.2f}  {runs}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outer", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--baseline", help="another checkout of the suite to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    if args.baseline:
        return compare(args)
    train = lv_train_batch(device)
    if args.worker:
        per_step = seconds_per_step(args.worker, train, device, args.outer)
        print(json.dumps({"seconds_per_step": per_step}))
        return None
    print(f"device {device}, torch {torch.__version__}, 1 thread, LV 9 x 4 x 20")
    print(f"{'method':>12} {'s/step':>9} {'steps/s':>8}")
    for name in args.methods:
        per_step = seconds_per_step(name, train, device, args.outer)
        print(f"{name:>12} {per_step:9.4f} {1 / per_step:8.2f}", flush=True)
    return None


if __name__ == "__main__":
    main()
