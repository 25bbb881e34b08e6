"""Datasets: the systems registry, environment design, generation and storage."""

from mixer.data import control_charts  # noqa: F401  (registers the 'control_charts' generator)
from mixer.data import eeg  # noqa: F401  (registers the 'eeg' generator)
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
