"""The ``mixer`` command: one subcommand per workflow stage, each with explicit paths."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mixer.errors import ConfigError, MixerError
from mixer.training.allocator import keep_freed_memory  # ctypes only, no torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mixer", description="mixer-bench: hierarchical meta-learning benchmarks for DSR."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="generate one dataset into a folder")
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="config YAML that lists the dataset")
    source.add_argument("--spec", help="the dataset's config entry as JSON (used by the workflow)")
    gen.add_argument("--dataset", required=True, help="dataset name (a key of `datasets`)")
    gen.add_argument("--out", type=Path, required=True, help="output folder")
    gen.set_defaults(run=_generate)

    train = commands.add_parser("train", help="train one benchmark cell")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="config YAML (with --method and --regime)")
    source.add_argument("--spec", help="the cell's resolved config as JSON (used by the workflow)")
    train.add_argument("--method", help="method name (a key of `methods`), with --config")
    train.add_argument("--regime", default="default", help="regime name, with --config")
    train.add_argument("--dataset-dir", type=Path, required=True, help="generated dataset folder")
    train.add_argument("--seed", type=int, help="with --config (a --spec carries its seed)")
    train.add_argument("--out", type=Path, required=True, help="the cell's run folder")
    train.add_argument(
        "--force", action="store_true", help="replace a finished model of another cell in --out"
    )
    train.add_argument(
        "--dataset-spec", help="the dataset's config entry as JSON, checked against the folder's"
    )
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="score a trained cell into metrics.json")
    evaluate.add_argument("--model", type=Path, required=True, help="model.pt of the cell")
    evaluate.add_argument("--dataset-dir", type=Path, required=True)
    evaluate.add_argument("--out", type=Path, required=True, help="metrics.json to write")
    evaluate.add_argument(
        "--dataset-spec", help="the dataset's config entry as JSON, checked against the folder's"
    )
    evaluate.set_defaults(run=_evaluate)

    aggregate = commands.add_parser(
        "aggregate", help="tables of every expected cell: runs.csv, summary.{csv,md,tex}"
    )
    aggregate.add_argument(
        "metrics",
        nargs="*",
        type=Path,
        help="metrics.json of every expected cell ({dataset}/{regime}/{method}/seed{seed}/); "
        "those that do not exist are listed as missing or failed",
    )
    aggregate.add_argument(
        "--cells-file", type=Path, help="a file listing more expected metrics.json, one a line"
    )
    aggregate.add_argument("--out-dir", type=Path, required=True, help="folder of the tables")
    aggregate.add_argument(
        "--logs", type=Path, default=Path("logs"), help="workflow logs (tell failed from missing)"
    )
    aggregate.add_argument(
        "--reference",
        help="method every other one is compared with, paired by seed (default: single, "
        "where it has cells); named, it must have cells among those given",
    )
    aggregate.set_defaults(run=_aggregate)

    plot = commands.add_parser("plot", help="every figure from runs.csv (and the cells' files)")
    plot.add_argument("--runs", type=Path, required=True, help="runs.csv of `mixer aggregate`")
    plot.add_argument("--out-dir", type=Path, required=True, help="folder of the figures")
    plot.add_argument("--strict", action="store_true", help="fail on a figure that cannot be drawn")
    plot.set_defaults(run=_plot)

    literature = commands.add_parser(
        "literature", help="the baselines' results next to their authors' logged figures"
    )
    literature.add_argument("--runs", type=Path, required=True, help="`mixer aggregate`'s runs.csv")
    literature.add_argument(
        "--anchors",
        type=Path,
        default=Path("config/literature.csv"),
        help="the logged figures (config key `literature`; default config/literature.csv)",
    )
    literature.add_argument(
        "--curves",
        type=Path,
        default=None,
        help="the authors' learning curves (default: <anchors stem>_curves.csv beside the "
        "anchors, when it exists)",
    )
    literature.add_argument("--out-dir", type=Path, required=True, help="folder of the tables")
    literature.add_argument("--figure", type=Path, help="also draw the learning curves (PNG)")
    literature.set_defaults(run=_literature)

    claims = commands.add_parser(
        "claims", help="judge the paper's claims from runs.csv: claims.csv and claims.md"
    )
    claims.add_argument("--runs", type=Path, required=True, help="runs.csv of `mixer aggregate`")
    claims.add_argument(
        "--claims",
        required=True,
        help="the config's `claims` block as JSON (used by the workflow); '{}': none tested",
    )
    claims.add_argument("--out-dir", type=Path, required=True, help="folder of the tables")
    claims.add_argument("--figure", type=Path, help="also draw the claims' figure (PNG) here")
    claims.set_defaults(run=_claims)

    check = commands.add_parser(
        "check-config",
        help="validate config files merged as `snakemake --configfile` merges them",
    )
    check.add_argument(
        "files", nargs="+", type=Path, help="e.g. config/config.yaml my.yaml (later files win)"
    )
    check.set_defaults(run=_check_config)

    learners = commands.add_parser(
        "learners", help="the registered learners and the keys each declares"
    )
    learners.add_argument("name", nargs="?", help="one learner (or package.module:Class)")
    learners.add_argument(
        "--write-catalog",
        action="store_true",
        help="rewrite mixer/methods/catalog.json from the built-in classes",
    )
    learners.set_defaults(run=_learners)

    contract = commands.add_parser(
        "test-learner",
        help="run the Learner contract checks on a learner (yours: package.module:Class)",
    )
    contract.add_argument("learner", help="a built-in name or package.module:Class")
    contract.add_argument(
        "--workdir", type=Path, help="folder for the tiny dataset and cell (default: a temp one)"
    )
    contract.set_defaults(run=_test_learner)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except MixerError as err:
        print(f"mixer {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. a full disk or a read-only folder while writing a result
        print(f"mixer {args.command}: error: {err}. Fix: free disk space or choose a writable "
              "folder.", file=sys.stderr)  # fmt: skip
        return 2


def _generate(args) -> int:
    from mixer.config import load_config, validate_dataset_spec
    from mixer.config.code import RULE_MODULES, dataset_targets
    from mixer.data import generate, save_dataset
    from mixer.records import provenance
    from mixer.records.sources import source_hash

    if args.config is not None:
        datasets = load_config(args.config)["datasets"]
        if args.dataset not in datasets:
            raise ConfigError(
                f"dataset '{args.dataset}' is not in {args.config}; "
                f"it lists: {', '.join(datasets) or '(none)'}"
            )
        spec = datasets[args.dataset]
    else:
        try:
            spec = json.loads(args.spec)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--spec is not valid JSON: {err}") from None
        spec = validate_dataset_spec(args.dataset, spec)

    start = time.perf_counter()
    splits, environments, extra = generate(spec)
    seconds = time.perf_counter() - start
    meta = {
        "dataset": args.dataset,
        "generator": spec,
        "seed": spec["seed"],
        **extra,
        "generation_seconds": round(seconds, 3),
        "provenance": {
            "versions": provenance.versions("numpy", "scipy", "mne"),
            "source_hash": source_hash(RULE_MODULES["generate_dataset"], dataset_targets(spec)),
            "git_commit": provenance.git_commit(),
        },
    }
    written = save_dataset(args.out, splits, environments, meta)
    shapes = ", ".join(f"{k} {v}" for k, v in written["splits"].items())
    print(f"{args.dataset}: {len(environments)} environments ({shapes}) in {seconds:.1f} s")
    print(f"content hash {written['content_hash']} -> {args.out}")
    return 0


def _one_thread() -> None:
    # Torch is fastest here with one thread per process; Snakemake runs jobs in parallel.
    import torch

    torch.set_num_threads(int(os.environ.get("MIXER_THREADS", "1")))
    keep_freed_memory()  # no page faults for every large tensor of a step


def _train(args) -> int:
    from mixer.config import load_config, resolve_cell, validate_cell

    dataset_spec = _dataset_spec(args)
    if args.config is not None:
        if not args.method or args.seed is None:
            raise ConfigError("--method and --seed are required with --config")
        config = load_config(args.config)
        for key, name in (("methods", args.method), ("regimes", args.regime)):
            if name not in config[key]:
                raise ConfigError(
                    f"--{key[:-1]} '{name}' is not under `{key}` in {args.config} (defined: "
                    f"{', '.join(config[key]) or 'none'})"
                )
        name = args.dataset_dir.resolve().name
        cfg = resolve_cell(config, name, args.regime, args.method, args.seed)
        cfg = validate_cell(cfg)  # the same checks as a --spec (e.g. a negative --seed)
        dataset_spec = config["datasets"].get(name, dataset_spec)
    else:
        try:
            cfg = json.loads(args.spec)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--spec is not valid JSON: {err}") from None
        cfg = validate_cell(cfg)
        if args.seed is not None and args.seed != cfg["seed"]:
            raise ConfigError(
                f"--seed {args.seed} differs from the spec's seed {cfg['seed']}. Fix: leave "
                "--seed out (a --spec carries its seed), or pass the spec of that seed."
            )
    _one_thread()
    from mixer.stages.train import train_cell

    try:
        state = train_cell(cfg, args.dataset_dir, args.out, dataset_spec, args.force)
    except KeyboardInterrupt:
        checkpoint = args.out / "checkpoint.pt"
        where = f"{checkpoint} resumes it" if checkpoint.is_file() else "no checkpoint yet"
        print(f"mixer train: interrupted; {where} (run the same command again)", file=sys.stderr)
        return 130
    print(
        f"{cfg['method']} seed {cfg['seed']}: status {state['status']} {state['reason']}, "
        f"{state['outer_steps']} outer steps in {state['train_seconds']:.1f} s -> {args.out}"
    )
    return 0


def _dataset_spec(args) -> dict | None:
    """--dataset-spec, validated under the name of the --dataset-dir folder, or None."""
    from mixer.config import validate_dataset_spec

    if args.dataset_spec is None:
        return None
    try:
        spec = json.loads(args.dataset_spec)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--dataset-spec is not valid JSON: {err}") from None
    return validate_dataset_spec(args.dataset_dir.resolve().name, spec)


def _evaluate(args) -> int:
    from mixer.stages.evaluate import evaluate_cell

    _one_thread()
    out = evaluate_cell(args.model, args.dataset_dir, args.out, _dataset_spec(args))
    shown = {k: out.get(k) for k in ("status", "rel_mse_id", "rel_mse_ood", "routing_purity")}
    print(f"{args.out}: {shown}")
    return 0


def _aggregate(args) -> int:
    from mixer.report.aggregate import check_reference, write_tables
    from mixer.report.summary import REFERENCE

    paths = list(args.metrics)
    if args.cells_file is not None:
        paths += [Path(line) for line in args.cells_file.read_text().split() if line]
    if not paths:
        raise ConfigError(
            "no cells: give metrics.json paths or --cells-file (a config with `experiments: []` "
            "has no cell to tabulate)"
        )
    if args.reference is not None:
        check_reference(paths, args.reference)
    try:
        written = write_tables(paths, args.out_dir, args.logs, args.reference or REFERENCE)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    runs = written["runs"]
    import pandas as pd

    counts = pd.read_csv(runs)["status"].value_counts().to_dict()
    print(f"{len(paths)} expected cells {counts} -> {args.out_dir}")
    return 0


def _plot(args) -> int:
    from mixer.report.plots import make_figures

    written = make_figures(args.runs, args.out_dir, strict=args.strict)
    print(f"{len(written)} figures -> {args.out_dir}")
    return 0


def _literature(args) -> int:
    from mixer.report.literature import write_literature

    written = write_literature(args.runs, args.anchors, args.out_dir, args.curves, args.figure)
    import pandas as pd

    verdicts = pd.read_csv(written["csv"])["verdict"].value_counts().to_dict()
    print(f"literature rows {verdicts} -> {args.out_dir}")
    return 0


def _claims(args) -> int:
    from mixer.config import validate_claims_spec
    from mixer.report.claims_files import write_claims

    try:
        spec = json.loads(args.claims)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--claims is not valid JSON: {err}") from None
    spec = validate_claims_spec(spec)
    if not args.runs.is_file():
        raise MixerError(f"{args.runs} not found. Fix: run `mixer aggregate` first.")
    written = write_claims(args.runs, spec, args.out_dir, args.figure)
    import pandas as pd

    table = pd.read_csv(written["table"])
    for _, row in table.iterrows():
        print(f"{row['claim']}: {row['verdict']}")
    print(f"-> {', '.join(str(p) for p in written.values())}")
    return 0


def _check_config(args) -> int:
    # Snakemake reports a YAML error in a --configfile without its line; this names it.
    from mixer.config import experiment_cells, load_config, resolve_cell

    config = load_config(*args.files)
    cells = experiment_cells(config)
    for cell in cells:
        resolve_cell(config, *cell)
    print(f"ok: {len(config['datasets'])} datasets, {len(cells)} cells")
    return 0


def _learners(args) -> int:
    from mixer.methods.catalog import learner_names, learner_spec, write_catalog

    if args.write_catalog:
        print(f"wrote {write_catalog()}")
        return 0
    if args.name is None:
        for name in learner_names():
            spec = learner_spec(name)
            print(f"{name:16s} {spec.target}  backbones: {', '.join(spec.backbones) or '-'}")
        return 0
    spec = learner_spec(args.name)
    print(f"{spec.name} ({spec.target})")
    for backbone in spec.backbones or [None]:
        if backbone is not None:
            print(f"\nwith backbone: {backbone}")
        for key, prop in sorted(spec.keys(backbone).items()):
            kind = prop.get("enum") or prop.get("type")
            print(f"  {key} ({kind}, default {prop.get('default')!r}): {prop.get('description')}")
    return 0


def _test_learner(args) -> int:
    import tempfile

    from mixer.stages.contract import run_contract

    _one_thread()
    if args.workdir is not None:
        ok = run_contract(args.learner, args.workdir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            ok = run_contract(args.learner, Path(tmp))
    print("the learner meets the contract" if ok else "the learner breaks the contract")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
