"""Preprocessing of EEG/MEG segments with MNE, for the ``eeg`` generator (``mixer.data.eeg``).

Channel picks, notch and band-pass filters, resampling, crop, rejection of flat and extreme
segments, z-scoring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mixer.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    from mixer.data.eeg_sources import Source


def pick_indices(name: str, ch_names: list[str], spec: dict) -> list[int]:
    """The channels source ``name`` keeps: ``channels`` (shared or per source), else the
    first ``n_channels``, else all."""
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


def apply_filters(inst, spec: dict) -> dict:
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


def preprocess(
    source: Source, spec: dict, support_samples: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Z-scored segments [k, C, n_times] of ``source``, their case indices, and the counts.

    Rejection reads the first ``support_samples`` samples only (None: the whole segment), the
    part a learner sees: were the scored rest to decide which segments are kept, the query
    part would choose its own test set. A segment is flat when a channel's standard
    deviation over that part is below ``reject_flat`` times that channel's median over the
    source's segments; it is extreme when a value of that part departs from the part's mean
    by more than ``reject_z`` times that median (an amplitude artefact: a segment's own
    standard deviation would cap |z| at sqrt(n - 1), 5.6 for 32 samples). Each kept channel
    is then z-scored with the support statistics, so that the scored rest leaks no statistic
    into it.
    """
    import mne

    rate = float(spec["resample"] or source.sfreq)
    counts = {"read": len(source.X)}
    cases = np.arange(len(source.X))
    nan = ~np.isfinite(source.X).all(axis=(1, 2))  # NaN ('?' in a .ts file) or infinite
    counts["dropped_nan"] = int(nan.sum())
    X, cases = source.X[~nan], cases[~nan]
    if not len(X):
        raise DatasetError(f"{', '.join(source.files)}: every segment holds NaN values")
    picks = pick_indices(source.name, source.ch_names, spec)
    info = mne.create_info(
        [source.ch_names[i] for i in picks],
        source.sfreq,
        [source.ch_types[i] for i in picks],
    )
    epochs = mne.EpochsArray(X[:, picks], info, verbose="error")
    applied = {} if source.filtered else apply_filters(epochs, spec)
    if rate != source.sfreq:
        epochs.resample(rate, method="polyphase", verbose="error")
    data = epochs.get_data(copy=True)
    start = round(spec["crop_start"] * rate)
    stop = start + spec["n_times"]
    if stop > data.shape[-1]:
        shortest = source.shortest_case
        cut = f" (all cut to the shortest, {shortest})" if shortest else ""
        raise ConfigError(
            f"source '{source.name}': segments hold {data.shape[-1]} samples{cut} at {rate:g} Hz, "
            f"but crop_start {spec['crop_start']} s + n_times {spec['n_times']} needs {stop}. "
            "Fix: lower n_times or crop_start, resample to a lower rate, or (raw) widen "
            "tmin/tmax."
        )
    data = data[:, :, start:stop]
    support = data[:, :, :support_samples]
    std = support.std(axis=-1)  # [k, C]
    typical = np.median(std, axis=0)  # [C], over the source's segments
    flat = (std <= 0).any(axis=1)
    if spec["reject_flat"]:
        flat |= (std < spec["reject_flat"] * typical).any(axis=1)
    counts["dropped_flat"] = int(flat.sum())
    data, support, cases = data[~flat], support[~flat], cases[~flat]
    centre = support.mean(axis=-1, keepdims=True)
    extreme = np.zeros(len(data), dtype=bool)
    if spec["reject_z"] is not None:
        excursion = np.abs(support - centre) / typical[None, :, None]
        extreme = (excursion > spec["reject_z"]).any(axis=(1, 2))
    z = (data - centre) / support.std(axis=-1, keepdims=True)
    counts["dropped_extreme"] = int(extreme.sum())
    counts["kept"] = int((~extreme).sum())
    info_out = {
        "files": source.files,
        "sfreq": source.sfreq,
        "rate": rate,
        "channels": info.ch_names,
        "channel_types": [source.ch_types[i] for i in picks],
        "z_score_samples": data.shape[-1] if support_samples is None else support_samples,
        **source.notes,
    }
    if not source.filtered:
        info_out["filters"] = applied
    return z[~extreme], cases[~extreme], counts | {"info": info_out}
