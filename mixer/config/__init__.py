"""The config layer: schema, validation, and the cells a config defines. No torch.

``from mixer.config import load_config, resolve_cell`` is the public way in; the modules are
:mod:`~mixer.config.schema` (the schema file and its messages), :mod:`~mixer.config.cells`
(a cell's resolved settings) and :mod:`~mixer.config.validate` (configs, cells, files).
"""

from mixer.config.cells import experiment_budget, experiment_cells, resolve_cell, resolve_method
from mixer.config.schema import schema
from mixer.config.validate import (
    load_config,
    read_config_file,
    validate_cell,
    validate_claims_spec,
    validate_config,
    validate_dataset_spec,
    validate_method,
)

__all__ = [
    "experiment_budget",
    "experiment_cells",
    "load_config",
    "read_config_file",
    "resolve_cell",
    "resolve_method",
    "schema",
    "validate_cell",
    "validate_claims_spec",
    "validate_config",
    "validate_dataset_spec",
    "validate_method",
]
