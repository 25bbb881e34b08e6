"""The config schema (``workflow/schemas/config.schema.yaml``) and its error messages.

The schema is the single description of every key: validation fills defaults in place and
rejects unknown keys. This module only reads it; :mod:`mixer.config.validate` checks configs.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators

from mixer.errors import ConfigError
from mixer.models.integrate.solvers import SOLVERS

SCHEMA_HINT = "Every key is described in workflow/schemas/config.schema.yaml."


SCHEMA_FILE = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def schema() -> dict:
    """The config schema (a fresh copy: validation fills defaults into what it is given)."""
    return copy.deepcopy(_schema_file())


@functools.cache
def _schema_file() -> dict:
    # The package is installed editable (README): the schema stays where Snakemake users
    # expect it, in workflow/schemas/, and both the workflow and the CLI read that one file.
    # Read once per process: resolving the paper grid's cells asks for it hundreds of times.
    if not SCHEMA_FILE.is_file():
        raise ConfigError(
            f"config schema {SCHEMA_FILE} not found. Fix: install mixer-bench editable from "
            "its repository (pip install -e .)."
        )
    full = yaml.safe_load(SCHEMA_FILE.read_text())
    # Names that live in a table of the code, not in the YAML: one place each.
    full["$defs"]["solver"]["properties"]["method"]["enum"] = list(SOLVERS)
    return full


def _with_defaults(base):
    check_properties = base.VALIDATORS["properties"]

    def fill_then_check(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for key, prop in properties.items():
                if "default" in prop and key not in instance:
                    instance[key] = copy.deepcopy(prop["default"])
        yield from check_properties(validator, properties, instance, subschema)

    return validators.extend(base, {"properties": fill_then_check})


DefaultFillingValidator = _with_defaults(Draft202012Validator)


def problems_error(title: str, problems: list[str], hint: str = "") -> ConfigError:
    """One line for one problem; a list, one per line, for several."""
    if len(problems) == 1:
        return ConfigError(f"{title}: {problems[0]}" + (f". {hint}" if hint else ""))
    lines = "\n".join(f"  - {p}" for p in problems)
    return ConfigError(f"{title}:\n{lines}" + (f"\n{hint}" if hint else ""))


def _where(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def describe_error(error) -> str:
    where = _where(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        keys = ", ".join(f"'{'.'.join([*map(str, error.absolute_path), k])}'" for k in unknown)
        return f"unknown key {keys}; allowed keys here: {', '.join(allowed)}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not one of {error.validator_value}"
    if error.validator == "type":
        hint = ""
        if isinstance(error.instance, str) and _reads_as_number(error.instance):
            hint = (
                f" (YAML reads {error.instance} as text: write the exponent with a sign and "
                "a decimal point, e.g. 1.0e+3, or write 1000.0)"
            )
        return (
            f"{where}: {error.instance!r} has the wrong type, expected "
            f"{error.validator_value}{hint}"
        )
    if error.validator == "pattern":
        return (
            f"{where}: name {error.instance!r} is not allowed: use letters, digits, '_', '-' "
            "and '.', and not '.' or '..' alone (it names a folder)"
        )
    if error.validator == "uniqueItems":
        return f"{where}: {error.instance} lists a value twice; give each once"
    return f"{where}: {error.message}"


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
