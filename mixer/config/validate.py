"""Config validation against the schema (:mod:`mixer.config.schema`), and config files.

Defaults are filled in place and unknown keys rejected. The same check runs in the Snakefile
(at parse time, so ``snakemake -n`` already fails on a bad config) and in the CLI (so a
hand-run command is held to the same rules).
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from mixer.config.cells import BLOCKS, CELL_KEYS, resolve_cell, resolve_method
from mixer.config.schema import (
    SCHEMA_HINT,
    DefaultFillingValidator,
    describe_error,
    problems_error,
    schema,
)
from mixer.errors import ConfigError
from mixer.methods.catalog import CATALOG_FIX, LearnerSpec, learner_spec


def validate_config(config: dict) -> dict:
    """Fill defaults into ``config`` in place and raise one ConfigError listing every problem."""
    explicit_reference = "reference_method" in config
    full = schema()
    errors = sorted(
        DefaultFillingValidator(full).iter_errors(config), key=lambda e: list(map(str, e.path))
    )
    if errors:
        raise problems_error("invalid config", [describe_error(e) for e in errors], SCHEMA_HINT)
    _check_generators(config)
    _check_generator_keys(config, full)
    _check_systems(config)
    for name, entry in config.get("methods", {}).items():
        validate_method(name, entry)
    _check_experiments(config)
    _check_claims(config)
    methods = config.get("methods", {})
    if explicit_reference and methods and config["reference_method"] not in methods:
        raise ConfigError(
            f"reference_method: '{config['reference_method']}' is not defined under `methods` "
            f"(defined: {', '.join(methods)}). Fix: name one of them."
        )
    return config


def validate_dataset_spec(name: str, spec: dict) -> dict:
    """Validate one dataset entry (as passed by the workflow rule) and fill its defaults."""
    return validate_config({"datasets": {name: spec}})["datasets"][name]


def validate_claims_spec(spec) -> dict:
    """Validate the `claims` block alone (as the workflow passes it to `mixer claims`) and
    fill its defaults. Only its shape is checked: the names it uses were checked against the
    whole config when the workflow read it (``validate_config``)."""
    config = {"claims": spec}
    errors = list(DefaultFillingValidator(schema()).iter_errors(config))
    if errors:
        raise problems_error("invalid claims", [describe_error(e) for e in errors], SCHEMA_HINT)
    return config["claims"]


def read_config_file(path: str | Path) -> dict:
    """One YAML config file as a mapping (not validated); a YAML error names its line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found. Fix: pass an existing YAML file.")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(
            f"config file {path} is not valid YAML{line}: {problem}. Fix: correct that line "
            "(indent with spaces only)."
        ) from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys at top level")
    return config


def merged(base: dict, update: dict) -> dict:
    """``update`` merged into ``base`` as Snakemake merges --configfile files: mappings key by
    key, every other value (lists included) replaced."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(*paths: str | Path) -> dict:
    """Read, merge (later files over earlier ones) and validate config files."""
    config: dict = {}
    for path in paths:
        config = merged(config, read_config_file(path))
    return validate_config(config)


def _check_generator_keys(config: dict, full: dict) -> None:
    """A dataset key of another generator (schema `x-generators`) must keep its default.

    Defaults are filled for every key, so a key is judged by its value: the workflow passes
    filled entries on to `mixer generate`, and those must validate again.
    """
    properties = full["$defs"]["dataset"]["properties"]
    defaults = {}  # filled in turn, e.g. trajectories: {} -> {train: 4, ...}
    for key, prop in properties.items():
        if "x-generators" in prop:
            defaults[key] = {"k": copy.deepcopy(prop["default"])}
            DefaultFillingValidator({"properties": {"k": prop}}).validate(defaults[key])
    problems = []
    for name, spec in config.get("datasets", {}).items():
        for key, value in spec.items():
            allowed = properties.get(key, {}).get("x-generators")
            if allowed and spec["generator"] not in allowed and value != defaults[key]["k"]:
                problems.append(
                    f"datasets.{name}.{key} applies to generator "
                    f"{' / '.join(repr(g) for g in allowed)} only, not '{spec['generator']}'; "
                    "remove it"
                )
    if problems:
        raise problems_error("invalid config", problems, SCHEMA_HINT)


def _check_generators(config: dict) -> None:
    from mixer.data.generate import GENERATORS

    for name, spec in config.get("datasets", {}).items():
        try:
            GENERATORS.get(spec["generator"])
        except ConfigError as err:
            raise ConfigError(f"datasets.{name}.generator: {err}") from None


def _check_systems(config: dict) -> None:
    from mixer.data.systems import resolve_system

    for name, spec in config.get("datasets", {}).items():
        if spec["generator"] != "ode":
            continue
        if not spec["systems"]:
            raise ConfigError(f"datasets.{name}.systems: generator 'ode' needs at least one system")
        for system in spec["systems"]:
            try:
                resolve_system(system)
            except ConfigError as err:
                raise ConfigError(f"datasets.{name}.systems: {err}") from None


def check_overrides(where: str, overrides: dict) -> None:
    """An override of the training/adaptation/solver blocks, checked on its own so that a bad
    key is named where it is written (a method's entry, an experiment)."""
    for block in BLOCKS:
        part = overrides.get(block) or {}
        properties = schema()["$defs"][block]["properties"]
        only = {"type": "object", "additionalProperties": False, "properties": properties}
        # Nested under its own path, so that messages name `where.block.key`.
        nested = {"type": "object", "properties": {where: {"properties": {block: only}}}}
        instance = {where: {block: copy.deepcopy(part)}}
        errors = list(DefaultFillingValidator(nested).iter_errors(instance))
        if errors:
            raise problems_error("invalid config", [describe_error(e) for e in errors])


def _check_experiments(config: dict) -> None:
    """Every name an experiment uses must exist, and every method must resolve cleanly."""
    for i, exp in enumerate(config.get("experiments", [])):
        check_overrides(f"experiments[{i}]", exp)
        for key in ("datasets", "methods", "regimes"):
            known = config.get(key, {})
            for name in exp[key]:
                if name not in known:
                    raise ConfigError(
                        f"experiments[{i}].{key}: '{name}' is not defined under `{key}` "
                        f"(defined: {', '.join(known) or 'none'})"
                    )
        for regime in exp["regimes"]:
            for method in exp["methods"]:
                resolve_method(config, method, regime)  # even when it lists no dataset yet
                for dataset in exp["datasets"]:
                    resolve_cell(config, dataset, regime, method, 0)


# What each name of a claim block must be defined under (singular keys hold one name).
CLAIM_NAMES = {
    "data_regime": {
        "datasets": "datasets",
        "regimes": "regimes",
        "mixer": "methods",
        "meta_learners": "methods",
    },
    "scaling": {
        "dataset": "datasets",
        "regimes": "regimes",
        "mixer": "methods",
        "naive": "methods",
    },
    "hierarchy": {
        "clear": "datasets",
        "blurred": "datasets",
        "regime": "regimes",
        "methods": "methods",
    },
}


def _check_claims(config: dict) -> None:
    """Every dataset, regime and method a claim names must be defined: a typo would otherwise
    show up only as a claim `not run` at the end of a long run."""
    for claim, keys in CLAIM_NAMES.items():
        block = config.get("claims", {}).get(claim)
        if block is None:
            continue
        for key, section in keys.items():
            names = block[key] if isinstance(block[key], list) else [block[key]]
            known = config.get(section, {})
            for name in names:
                if name not in known:
                    raise ConfigError(
                        f"claims.{claim}.{key}: '{name}' is not defined under `{section}` "
                        f"(defined: {', '.join(known) or 'none'})"
                    )


def method_schema(spec: LearnerSpec, backbone: str | None = None) -> dict:
    """The JSON schema of a method entry of learner ``spec`` (with ``backbone``'s keys)."""
    common = schema()["$defs"]["method"]["properties"]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["learner"],
        "properties": {**common, **spec.keys(backbone)},
    }


def validate_method(name: str, entry: dict) -> dict:
    """Check a method entry against the keys its learner declares; fill their defaults."""
    where = f"methods.{name}"
    try:
        spec = learner_spec(entry["learner"])
    except ConfigError as err:
        raise ConfigError(f"{where}.learner: {err}") from None
    check_overrides(where, entry)
    backbone = entry.get("backbone", spec.default_backbone)
    own = spec.any_backbone and isinstance(backbone, str) and ":" in backbone
    if "backbone" in entry and backbone not in spec.backbones and not own:
        valid = ", ".join(spec.backbones) or "none: its architecture is fixed"
        also = " or your own as 'package.module:Class'" if spec.any_backbone else ""
        stale = "" if ":" in spec.name else f". {CATALOG_FIX}"
        raise ConfigError(
            f"{where}.backbone: learner '{spec.name}' does not run backbone {backbone!r} "
            f"(it runs: {valid}{also}){stale}"
        )
    full = method_schema(spec, backbone)
    unknown = sorted(set(entry) - set(full["properties"]))
    if unknown:
        keys = ", ".join(f"'{where}.{k}'" for k in unknown)
        with_backbone = f" with backbone '{backbone}'" if spec.backbones else ""
        raise ConfigError(
            f"unknown key {keys}: learner '{spec.name}'{with_backbone} declares "
            f"{', '.join(sorted(full['properties']))}. Fix: remove it (`mixer learners "
            f"{spec.name}` describes every key)."
        )
    errors = list(DefaultFillingValidator(full).iter_errors(entry))
    if errors:
        raise problems_error(
            f"invalid method '{name}'", [f"{where}.{describe_error(e)}" for e in errors]
        )
    return entry


def validate_cell(cell) -> dict:
    """Check a resolved cell handed over by hand or by the workflow (``mixer train --spec``).

    The cell is rebuilt from its own parts through the same validation and resolution as a
    config, and must come out unchanged: a missing, unknown or inconsistent key is an error.
    """
    fix = "Fix: pass what the workflow's train rule passes, or use --config."
    if not isinstance(cell, dict):
        raise ConfigError(f"the cell spec must be a JSON object, got {type(cell).__name__}. {fix}")
    missing = [k for k in (*CELL_KEYS, "learner", *BLOCKS) if k not in cell]
    if missing:
        raise ConfigError(f"the cell spec lacks {', '.join(missing)}. {fix}")
    method, regime = cell["method"], cell["regime"]
    for key in ("method", "regime", "dataset"):
        if not isinstance(cell[key], str):
            raise ConfigError(f"the cell spec's {key} must be a name, got {cell[key]!r}. {fix}")
    entry = {k: v for k, v in cell.items() if k not in CELL_KEYS}
    config = validate_config(
        {
            "methods": {method: copy.deepcopy(entry)},
            "regimes": {regime: copy.deepcopy(cell["regime_knobs"])},
            "device": cell["device"],
            "seeds": [cell["seed"]],
        }
    )
    rebuilt = resolve_cell(config, cell["dataset"], regime, method, config["seeds"][0])
    differ = sorted(k for k in rebuilt.keys() | cell.keys() if rebuilt.get(k) != cell.get(k))
    if differ:
        raise ConfigError(
            f"the cell spec of method '{method}' is inconsistent in {', '.join(differ)} "
            f"(e.g. a size that its regime or learner derives differently). {fix}"
        )
    return rebuilt
