"""The anchor of ARCHITECTURE.md: MixER with 3 GEPS experts on Lotka-Volterra.

Setting of the public JAX reference's measurement: 9 training environments x 4 trajectories x
20 points, root MLP 2 -> 256 -> 256 -> 256 -> 2, context 2 per expert (split, d_xi = 6), an
adaptive 5th-order solver at rtol 1e-3, atol 1e-6 (Tsit5 there, dopri5 here; ``--solver rk4``
for the fixed-step default). The reference reaches 2.2 inner steps per second at best; our
target is >= 22.

    python benchmarks/bench_lv_mixer3.py [--steps 48] [--full] [--solver dopri5|rk4]

``--full`` trains for 960 inner steps and reports in-domain test MSE and the adaptation MSE
after 500 context steps (reference: 1.1e-2 and 4.2e-2). Ends with the line
``lv_mixer3_geps_inner_steps_per_s <value>``.
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=48, help="inner steps to time")
    parser.add_argument("--full", action="store_true", help="960 steps, then errors")
    parser.add_argument("--solver", default="dopri5", choices=["dopri5", "rk4"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)

    spec = validate_dataset_spec("lv", {"generator": "ode", "systems": ["lotka_volterra"]})
    folder = tempfile.mkdtemp(prefix="bench_lv_")
    splits, envs, extra = generate(spec)
    save_dataset(folder, splits, envs, {"dataset": "lv", "generator": spec, **extra})
    dataset = load_dataset(folder)

    n_inner = 960 if args.full else args.steps
    config = validate_config(
        {
            "training": {"outer_steps": max(n_inner // 24, 1), "checkpoint_every": 0},
            "adaptation": {"steps": 500},
            "solver": {"method": args.solver},
            "methods": {
                "mixer": {"learner": "mixer", "backbone": "geps", "n_experts": 3,
                          "context_dim": 6, "width": 256, "depth": 3}
            },
        }
    )  # fmt: skip
    cfg = resolve_method(config, "mixer")
    train = make_batch(dataset, "train", {}, device)
    learner = learner_class("mixer")(cfg, 2, train.n_envs, device, seed=0)
    began = time.perf_counter()
    log = learner.fit(train)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    rate = log.inner_steps / seconds
    print(f"device {device}, solver {args.solver}, torch {torch.__version__}, 1 thread")
    print(
        f"{log.inner_steps} inner steps in {seconds:.2f} s, final loss {log.rows[-1]['loss']:.4g}"
    )
    if args.full:
        test = make_batch(dataset, "test", {}, device)
        mse_id = (learner.predict(test) - test.X).square().mean().item()
        support = make_batch(dataset, "adapt_support", {}, device)
        query = make_batch(dataset, "adapt_query", {}, device)
        mse_ood = (learner.predict(query, learner.adapt(support)) - query.X).square().mean()
        print(f"test_mse_id {mse_id:.4g}")
        print(f"adaptation_mse {mse_ood.item():.4g}")
    print(f"lv_mixer3_geps_inner_steps_per_s {rate:.2f}")


if __name__ == "__main__":
    main()
