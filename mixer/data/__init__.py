"""Datasets: the systems registry, environment design, generation and storage."""

from mixer.data.generate import GENERATORS, SPLITS, generate, register_generator
from mixer.data.storage import Dataset, Split, load_dataset, save_dataset
from mixer.data.systems import SYSTEMS, ODESystem, Protocol, register_system, resolve_system

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
    "register_generator",
    "register_system",
    "resolve_system",
    "save_dataset",
]
