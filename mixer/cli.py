"""The ``mixer`` command: one subcommand per workflow stage, each with explicit paths."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mixer.errors import ConfigError, MixerError


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

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except MixerError as err:
        print(f"mixer {args.command}: error: {err}", file=sys.stderr)
        return 2


def _generate(args) -> int:
    from mixer import provenance
    from mixer.config import load_config, validate_dataset_spec
    from mixer.data import generate, save_dataset

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
            "versions": provenance.versions("numpy", "scipy"),
            "source_hash": provenance.source_hash("data"),
            "git_commit": provenance.git_commit(),
        },
    }
    written = save_dataset(args.out, splits, environments, meta)
    shapes = ", ".join(f"{k} {v}" for k, v in written["splits"].items())
    print(f"{args.dataset}: {len(environments)} environments ({shapes}) in {seconds:.1f} s")
    print(f"content hash {written['content_hash']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
