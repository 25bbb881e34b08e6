"""Which ODE solver each dataset can afford: integration error of the candidate solvers on the
true vector fields, against DOP853.

For every ODE dataset of the configs, the dataset is generated as the workflow generates it.
Its stored trajectories are the reference: scipy's DOP853 in float64 at rtol = atol = 1e-10
(``mixer.data.integrate``). From the same first states, over the same per-environment time
grids, the true field of each environment is integrated by the suite's own rollout
(``mixer.models.rollout``, in float32 as training runs, every environment of a split in one
call as a training step integrates them) with

- the paper's dopri5 at rtol 1e-3, atol 1e-6 (one step-size control shared by the whole
  split, as in training), and
- RK4 at 1, 2 and 4 equal substeps per observation interval.

The environments are those of the training split (train) and the adaptation splits
(adapt_support, adapt_query). Per candidate: the MSE and the largest absolute error over every
point of those splits, and the field evaluations of one rollout of each split (summed over
the three; the batch counts once, as a training step's rollout does).

The rule (``pick``): the cheapest RK4 whose MSE and maximum error are both no larger than
dopri5's; dopri5 where none is. ``--write`` puts the table into config/README.md (between the
``solver-table`` markers) and its figures into config/solvers.csv, which
tests/unit/test_solver_table.py holds every config to.

    python benchmarks/bench_solvers.py [--config config/config.yaml config/paper.yaml]
                                       [--only DATASET[,..]] [--write]
"""

from __future__ import annotations

import argparse
import csv
import re
import time
from pathlib import Path

import numpy as np
import torch

from mixer.config import load_config
from mixer.data import generate
from mixer.data.systems import resolve_system
from mixer.models import VectorField, rollout

ROOT = Path(__file__).resolve().parents[1]
CSV_PATH = ROOT / "config" / "solvers.csv"
README = ROOT / "config" / "README.md"
MARKERS = ("<!-- solver-table:start -->", "<!-- solver-table:end -->")
SPLITS = ("train", "adapt_support", "adapt_query")
DOPRI5 = {"method": "dopri5", "rtol": 1e-3, "atol": 1e-6}
RK4_SUBSTEPS = (1, 2, 4, 8, 16, 32)


def candidates() -> dict[str, dict]:
    return {
        "dopri5": DOPRI5,
        **{f"rk4x{s}": {"method": "rk4", "substeps": s} for s in RK4_SUBSTEPS},
    }


def true_field(environments: list[dict], env_id: np.ndarray):
    """f(τ, x) [E, N, d] of each row's own system and parameters, through the numpy laws."""
    rows = [environments[int(i)] for i in env_id]
    groups = {}
    for row, env in enumerate(rows):
        groups.setdefault(env["family"], []).append(row)
    laws = []
    for family, members in groups.items():
        system = resolve_system(family)
        params = {
            k: np.array([rows[r]["params"][k] for r in members], dtype=np.float64)[:, None]
            for k in system.reference
        }
        laws.append((system, np.array(members), params))

    def field(_tau, x: torch.Tensor) -> torch.Tensor:
        y = x.detach().double().numpy()
        out = np.empty_like(y)
        for system, members, params in laws:
            with np.errstate(all="ignore"):
                out[members] = system.vector_field(y[members], params)
        return torch.from_numpy(out).to(x.dtype)

    return field


def measure(splits: dict, environments: list[dict]) -> dict[str, dict]:
    """Per candidate: MSE, max abs error and field evaluations over SPLITS."""
    found = {}
    for name, solver in candidates().items():
        squares, points, worst, evaluations = 0.0, 0, 0.0, 0
        for split in SPLITS:
            data = splits[split]
            exact = torch.from_numpy(data["X"])  # [E, N, T, d] float64
            t = torch.from_numpy(data["t"]).float()
            counted = VectorField(true_field(environments, data["env_id"]))
            with torch.no_grad():
                approx = rollout(counted, exact[:, :, 0].float(), t, **solver).double()
            error = approx - exact
            error = torch.where(error.isfinite(), error, torch.full_like(error, float("inf")))
            squares += error.square().sum().item()
            points += error.numel()
            worst = max(worst, error.abs().max().item())
            evaluations += counted.nfe
        found[name] = {"mse": squares / points, "max": worst, "nfe": evaluations}
    return found


def pick(found: dict[str, dict]) -> str:
    """The cheapest RK4 no worse than dopri5 on both MSE and maximum error, else dopri5."""
    ref = found["dopri5"]
    for s in RK4_SUBSTEPS:
        got = found[f"rk4x{s}"]
        if got["mse"] <= ref["mse"] and got["max"] <= ref["max"]:
            return f"rk4x{s}"
    return "dopri5"


def ode_datasets(config: dict, only=None) -> list[str]:
    used = {d for exp in config.get("experiments", []) for d in exp["datasets"]}
    return [
        name
        for name, spec in config["datasets"].items()
        if name in used and spec["generator"] == "ode" and (not only or name in only)
    ]


def markdown(rows: list[dict]) -> str:
    head = (
        "| dataset | systems | dopri5 MSE | dopri5 max | dopri5 evals "
        + " ".join(f"| RK4×{s} MSE | RK4×{s} max | RK4×{s} evals" for s in RK4_SUBSTEPS)
        + " | pick |\n"
    )
    head += "|---|---|" + "---:|" * (3 + 3 * len(RK4_SUBSTEPS)) + "---|\n"
    body = ""
    for r in rows:
        cols = [r["dataset"], str(r["systems"])]
        for name in candidates():
            cols += [f"{r[name + '_mse']:.3g}", f"{r[name + '_max']:.3g}", str(r[name + "_nfe"])]
        cols.append(f"**{r['pick']}**")
        body += "| " + " | ".join(cols) + " |\n"
    return head + body


def write(rows: list[dict]) -> None:
    with CSV_PATH.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = README.read_text()
    pattern = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{README}: markers {MARKERS} not found; add them where the table goes")
    table = f"{MARKERS[0]}\n{markdown(rows)}{MARKERS[1]}"
    README.write_text(pattern.sub(lambda _m: table, text))
    print(f"wrote {CSV_PATH.relative_to(ROOT)} and the table in {README.relative_to(ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", nargs="+", default=["config/config.yaml", "config/paper.yaml"])
    parser.add_argument("--only", type=lambda s: s.split(","), default=None)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # Each config on its own (a dataset's spec may differ between them), each dataset once.
    specs = {}
    for path in args.config:
        config = load_config(*dict.fromkeys(["config/config.yaml", path]))
        for name in ode_datasets(config, args.only):
            specs.setdefault(name, config["datasets"][name])
    rows = []
    for name, spec in specs.items():
        began = time.perf_counter()
        splits, environments, _ = generate(spec)
        found = measure(splits, environments)
        row = {"dataset": name, "systems": len(spec["systems"])}
        for cand, got in found.items():
            row.update({f"{cand}_{k}": v for k, v in got.items()})
        row["pick"] = pick(found)
        rows.append(row)
        figures = [
            f"{c} mse {g['mse']:.3g} max {g['max']:.3g} evals {g['nfe']}" for c, g in found.items()
        ]
        took = time.perf_counter() - began
        print(f"{name}: {', '.join(figures)} -> {row['pick']} ({took:.1f} s)", flush=True)
    if args.write:
        write(rows)


if __name__ == "__main__":
    main()
