"""The anchor of ARCHITECTURE.md: MixER with 3 GEPS experts on Lotka-Volterra.

Setting of the public JAX reference's measurement: 9 training environments x 4 trajectories x
20 points, root MLP 2 -> 256 -> 256 -> 256 -> 2, context 2 per expert (split, d_xi = 6), the
reference's refit schedule (gate refit every 5 inner steps) and the paper's proximal setting
(beta = 10 on the mean squared distance of each group, contexts or model, divided once by
its entry count as the reference does: ``proximal_norm: mean``). The solver is fixed-step
RK4 by default; the script prints its integration error on the true LV field next to dopri5
at rtol 1e-3, atol 1e-6
(the reference's tolerance). Target: >= 0.5 of the ceiling below at one thread (issue 23).

    python benchmarks/bench_lv_mixer3.py [--steps 48] [--full] [--solver rk4|dopri5]
                                         [--substeps 1] [--threads 1 2] [--seed 0]

``--full`` trains for 960 inner steps and reports in-domain test MSE and the adaptation MSE
after 500 context steps (reference: 1.1e-2 and 4.2e-2). The learning rates ``LR`` were
chosen on val with ``--tune 10 11`` (seeds other than the reported seed 0). The script also
prints a ceiling: the inner steps per second of the matrix products alone (K = 3 experts
means three products of 12 rows where one expert would have one of 36). Each thread count
trains its own model; the figures of each are printed. Ends with the peak memory (max RSS)
and the line ``lv_mixer3_geps_inner_steps_per_s <value>`` (the first thread count's rate).
"""

from __future__ import annotations

import argparse
import functools
import resource
import statistics
import tempfile
import time

import torch

from mixer.config import resolve_method, validate_config, validate_dataset_spec
from mixer.data import generate, load_dataset, save_dataset
from mixer.methods import learner_class
from mixer.models import VectorField, rollout
from mixer.training.allocator import keep_freed_memory
from mixer.training.batches import make_batch


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


def mixer3_learner(dataset, device, solver, n_inner, lr, seed):
    """The benchmark's learner (untrained) and its training batch."""
    config = validate_config(
        {
            "training": {"outer_steps": max(n_inner // 24, 1), "checkpoint_every": 0,
                         "proximal_ctx": 10.0, "proximal_model": 10.0,
                         "proximal_norm": "mean", "lr_ctx": lr[0], "lr_model": lr[1]},
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
    return learner_class("mixer")(cfg, 2, train.n_envs, device, seed=seed), train


def interleaved(learner, ceiling, runs: int) -> list[float]:
    """Makes ``learner.fit`` measure ``ceiling()`` at ``runs`` evenly spaced outer steps (the
    first included); returns the list the rates go to and, as its last entry after the fit,
    the seconds those measurements took (to take off the training time)."""
    found, start, spent = [], learner.start_outer_step, [0.0]
    n_outer = learner.cfg["training"]["outer_steps"]
    at = {round(i * n_outer / runs) for i in range(runs)}

    def measured(outer, n):
        if outer in at:
            began = time.perf_counter()
            found.append(ceiling())
            spent[0] += time.perf_counter() - began
        start(outer, n)

    learner.start_outer_step = measured
    return found, spent


def train_and_score(dataset, device, solver, args, threads, ceiling=None):
    """Inner steps/s of training (and the errors with --full); with ``ceiling``, also the
    ceiling's rates, measured between outer steps of the same run (their time left out)."""
    torch.set_num_threads(threads)
    n_inner = 960 if args.full else args.steps
    learner, train = mixer3_learner(dataset, device, solver, n_inner, LR, seed=args.seed)
    ceilings, spent = interleaved(learner, ceiling, args.ceiling_runs) if ceiling else ([], [0])
    began = time.perf_counter()
    log = learner.fit(train)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began - spent[0]
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
        print(f"threads {threads}, seed {args.seed}: test_mse_id {mse_id:.4g}  "
              f"adaptation_mse {mse_ood.item():.4g}")  # fmt: skip
    return rate, ceilings


# Learning rates (contexts, network), chosen on val with seeds 10 and 11 (never 0, the seed
# reported) by ``--tune``: see config/README.md, "Where the defaults come from".
LR = (1.0e-2, 3.0e-3)
LR_GRID = [(1.0e-3, 1.0e-3), (1.0e-2, 1.0e-3), (3.0e-3, 3.0e-3), (1.0e-2, 3.0e-3)]


def tune(dataset, device, solver, seeds) -> None:
    """val MSE after 960 inner steps for every learning-rate pair of LR_GRID and seed."""
    torch.set_num_threads(1)
    val = make_batch(dataset, "val", {}, device)
    for lr in LR_GRID:
        for seed in seeds:
            learner, train = mixer3_learner(dataset, device, solver, 960, lr, seed)
            learner.fit(train)
            mse = (learner.predict(val) - val.X).square().mean().item()
            print(f"tune lr_ctx {lr[0]:g} lr_model {lr[1]:g} seed {seed}: val_mse_id {mse:.4g}",
                  flush=True)  # fmt: skip


def matmul_ceiling(device, n_evals: int, refit_every: int) -> float:
    """Inner steps/s if an inner step did nothing but its matrix products with 3 experts.

    Per field evaluation: 2 grouped products forward ([36, 256] rows, 12 per expert, times
    [256, 256 + 8]) and 2 backward; per model step (every other step) each layer's weight
    gradient over all evaluations; every ``refit_every`` steps the refit's forward over 3
    experts x 9 environments. Same weights at every call (warm caches): a ceiling.
    """
    torch.set_num_threads(1)
    offsets = torch.tensor([12, 24, 36], dtype=torch.int32, device=device)
    rows, wide = torch.randn(36, 256, device=device), torch.randn(36, 264, device=device)
    weight = torch.randn(3, 256, 264, device=device)
    back = weight.transpose(1, 2).contiguous()
    many = torch.randn(36 * n_evals, 256, device=device)
    many_wide = torch.randn(36 * n_evals, 264, device=device)
    refit_rows = torch.randn(108, 256, device=device)

    def one_step(model_step: bool, refit: bool) -> None:
        for _ in range(n_evals):
            for _ in range(2):
                torch._grouped_mm(rows, weight, offs=offsets)
                torch._grouped_mm(wide, back, offs=offsets)
        if model_step:
            for _ in range(2):
                torch._grouped_mm(many.T, many_wide, offs=offsets * n_evals)
        if refit:
            for _ in range(2 * n_evals):
                torch._grouped_mm(refit_rows, weight, offs=offsets * 3)

    one_step(True, True)
    began = time.perf_counter()
    n_steps = 2 * refit_every
    for step in range(n_steps):
        one_step(step % 2 == 1, step % refit_every == 0)
    return n_steps / (time.perf_counter() - began)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=48, help="inner steps to time")
    parser.add_argument("--full", action="store_true", help="960 steps, then errors")
    parser.add_argument("--solver", default="rk4", choices=["rk4", "dopri5"])
    parser.add_argument("--substeps", type=int, default=1, help="RK4 steps per interval")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ceiling-runs", type=int, default=7, help="ceiling measurements")
    tune_help = "instead: val MSE of each learning rate of LR_GRID for these seeds"
    parser.add_argument("--tune", type=int, nargs="+", metavar="SEED", help=tune_help)
    seed_help = "training seed (0 is the reported one; others show the spread of the errors)"
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    parser.add_argument(
        "--glibc-defaults", action="store_true", help="leave glibc's allocator as it is"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if not args.glibc_defaults:
        keep_freed_memory()  # as `mixer train` runs

    spec = validate_dataset_spec("lv", {"generator": "ode", "systems": ["lotka_volterra"]})
    folder = tempfile.mkdtemp(prefix="bench_lv_")
    splits, envs, extra = generate(spec)
    save_dataset(folder, splits, envs, {"dataset": "lv", "generator": spec, **extra})
    dataset = load_dataset(folder)
    solver = {"method": args.solver, "substeps": args.substeps, "rtol": 1e-3, "atol": 1e-6}
    if args.tune:
        return tune(dataset, device, solver, args.tune)
    print(f"device {device}, torch {torch.__version__}, solver {solver}, lr {LR}")
    reference = {"method": "dopri5", "rtol": 1e-3, "atol": 1e-6}
    for name, setting in (("used", solver), ("dopri5 rtol 1e-3 atol 1e-6", reference)):
        mse, worst, nfe = lv_integration_error(dataset, device, setting)
        print(f"integration error on the true LV field, {name}: MSE {mse:.3g}, "
              f"max {worst:.3g}, {nfe} evaluations")  # fmt: skip
    ceiling = None
    if device.type == "cpu":
        n_evals = 19 * 4 * args.substeps if args.solver == "rk4" else 62
        ceiling = functools.partial(matmul_ceiling, device, n_evals, refit_every=5)
    rates = []
    for i, n in enumerate(args.threads):
        rate, ceilings = train_and_score(
            dataset, device, solver, args, n, ceiling if i == 0 else None
        )
        rates.append(rate)
        torch.set_num_threads(1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"peak memory (max RSS) {peak:.2f} GiB")
    if ceilings:
        mid = statistics.median(ceilings)
        print(f"ceiling: the matrix products of an inner step alone, 1 thread, warm caches, "
              f"{len(ceilings)} runs interleaved with the {args.threads[0]}-thread training: "
              f"median {mid:.2f} inner steps/s (min {min(ceilings):.2f}, max "
              f"{max(ceilings):.2f}: {', '.join(f'{c:.2f}' for c in ceilings)})")  # fmt: skip
        print(f"fraction of the ceiling: {rates[0] / mid:.3f}")
    print(f"lv_mixer3_geps_inner_steps_per_s {rates[0]:.2f}")
    return None


if __name__ == "__main__":
    main()
