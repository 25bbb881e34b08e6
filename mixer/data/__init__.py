"""Datasets: the systems registry, environment design, generation and storage."""

# the generator modules register 'control_charts' and 'eeg' on import
from mixer.data import control_charts, eeg  # noqa: F401
from mixer.data.generate import GENERATORS, SPLITS, generate
from mixer.data.storage import Dataset, Split, load_dataset, save_dataset
from mixer.data.systems import SYSTEMS, ODESystem, Protocol, resolve_system

__all__ = [
    "GENERATORS",
    "SPLITS",
    "SYSTEMS",
    "Dataset",
    "ODESystem",
    "Protocol",
    "Split",
    "generate",
    "load_dataset",
    "resolve_system",
    "save_dataset",
]
