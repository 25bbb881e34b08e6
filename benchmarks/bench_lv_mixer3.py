"""The anchor of ARCHITECTURE.md: MixER with 3 GEPS experts on Lotka-Volterra.

Setting of the public JAX reference's measurement: 9 training environments x 4 trajectories x
20 points, root MLP 2 -> 256 -> 256 -> 256 -> 2, context 2 per expert (split, d_xi = 6), the
reference's refit schedule (gate refit every 5 inner steps) and the paper's proximal setting
(beta = 10 on the MEAN squared distance per parameter tensor, ``proximal_norm: mean``; the
suite's default stays a plain sum). The solver is fixed-step RK4 by default; the script
prints its integration error on the true LV field next to dopri5 at rtol 1e-3, atol 1e-6
(the reference's tolerance). Target: >= 33 inner steps per second at one thread.

    python benchmarks/bench_lv_mixer3.py [--steps 48] [--full] [--solver rk4|dopri5]
                                         [--substeps 1] [--threads 1 2]

``--full`` trains for 960 inner steps and reports in-domain test MSE and the adaptation MSE
after 500 context steps (reference: 1.1e-2 and 4.2e-2). Each thread count trains its own
model; the figures of each are printed. Ends with the peak memory (max RSS) and the line
``lv_mixer3_geps_inner_steps_per_s <value>`` (the first thread count's rate).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch

from mixer.batch import make_batch
from mixer.cells import resolve_method
from mixer.config import validate_config, validate_dataset_spec
from mixer.data import generate, load_dataset, save_dataset
from mixer.methods import learner_class
from mixer.models import VectorField, rollout


def lv_integration_error(dataset, device, solver: dict) -> tuple[float, float, int]:
    """(MSE, max abs error, evaluations) of ``solver`` on the true LV field of the training
    environments from their first states, in float32, against dopri5 at rtol 1e-10."""
    train = make_batch(dataset, "train", {}, device)
    params = [dataset.environments[int(i)]["params"] for i in train.env_id]
    coef = {k: torch.tensor([p[k] for p in params], dtype=torch.float64, device=device)
            for k in ("alpha", "beta", "gamma", "delta")}  # fmt: skip

    def field(tau, y):
        x, v = y[..., 0], y[..., 1]
        c = {k: value.to(y.dtype).view(-1, 1) for k, value in coef.items()}
        return torch.stack(
            [c["alpha"] * x - c["beta"] * x * v, c["delta"] * x * v - c["gamma"] * v], dim=-1
        )

    x0, t = train.x0.double(), train.t.double()
    exact = rollout(field, x0, t, method="dopri5", rtol=1e-10, atol=1e-10)
    counted = VectorField(field)
    approx = rollout(counted, x0.float(), t.float(), **solver)
    error = approx.double() - exact
    return error.square().mean().item(), error.abs().max().item(), counted.nfe


def train_and_score(dataset, device, solver, args, threads):
    torch.set_num_threads(threads)
    n_inner = 960 if args.full else args.steps
    config = validate_config(
        {
            "training": {"outer_steps": max(n_inner // 24, 1), "checkpoint_every": 0,
                         "proximal_ctx": 10.0, "proximal_model": 10.0,
                         "proximal_norm": "mean"},
            "adaptation": {"steps": 500},
            "solver": solver,
            "methods": {
                "mixer": {"learner": "mixer", "backbone": "geps", "n_experts": 3,
                          "context_dim": 6, "width": 256, "depth": 3, "gate_every": 5}
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
    print(
        f"threads {threads}: {log.inner_steps} inner steps in {seconds:.2f} s "
        f"({rate:.2f} inner steps/s), final loss {log.rows[-1]['loss']:.4g}, "
        f"refits {learner.refits_done} done / {learner.refits_skipped} skipped",
        flush=True,
    )
    if args.full:
        test = make_batch(dataset, "test", {}, device)
        mse_id = (learner.predict(test) - test.X).square().mean().item()
        support = make_batch(dataset, "adapt_support", {}, device)
        query = make_batch(dataset, "adapt_query", {}, device)
        mse_ood = (learner.predict(query, learner.adapt(support)) - query.X).square().mean()
        print(f"threads {threads}: test_mse_id {mse_id:.4g}  adaptation_mse {mse_ood.item():.4g}")
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=48, help="inner steps to time")
    parser.add_argument("--full", action="store_true", help="960 steps, then errors")
    parser.add_argument("--solver", default="rk4", choices=["rk4", "dopri5"])
    parser.add_argument("--substeps", type=int, default=1, help="RK4 steps per interval")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    spec = validate_dataset_spec("lv", {"generator": "ode", "systems": ["lotka_volterra"]})
    folder = tempfile.mkdtemp(prefix="bench_lv_")
    splits, envs, extra = generate(spec)
    save_dataset(folder, splits, envs, {"dataset": "lv", "generator": spec, **extra})
    dataset = load_dataset(folder)
    solver = {"method": args.solver, "substeps": args.substeps, "rtol": 1e-3, "atol": 1e-6}
    print(f"device {device}, torch {torch.__version__}, solver {solver}")
    reference = {"method": "dopri5", "rtol": 1e-3, "atol": 1e-6}
    for name, setting in (("used", solver), ("dopri5 rtol 1e-3 atol 1e-6", reference)):
        mse, worst, nfe = lv_integration_error(dataset, device, setting)
        print(f"integration error on the true LV field, {name}: MSE {mse:.3g}, "
              f"max {worst:.3g}, {nfe} evaluations")  # fmt: skip
    rates = [train_and_score(dataset, device, solver, args, n) for n in args.threads]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"peak memory (max RSS) {peak:.2f} GiB")
    print(f"lv_mixer3_geps_inner_steps_per_s {rates[0]:.2f}")


if __name__ == "__main__":
    main()
