"""Nothing silent, nothing lost: results carry their cell's fingerprint, models load without
running code, and bad input ends in one line (exit 2) that names the file or key and the fix."""

from __future__ import annotations

import json

import pytest
import torch

from mixer.cli import main as mixer
from mixer.config import resolve_cell
from mixer.data import generate, save_dataset
from mixer.errors import ConfigError, MixerError
from mixer.records.identity import IdentityError
from mixer.stages.train import train_cell
from mixer.training.checkpoints import Checkpoint
from tests.helpers import make_spec, validated_copy

CONFIG = {
    "training": {"outer_steps": 2, "n_ctx": 2, "n_model": 2},
    "adaptation": {"steps": 3},
    "methods": {"single": {"learner": "single", "context_dim": 2, "width": 8, "depth": 1}},
    "device": "cpu",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, lotka_volterra):
    """A trained cell in a run folder named for it: (dataset folder, run folder)."""
    run = tmp_path_factory.mktemp("runs") / "lv" / "default" / "single" / "seed0"
    cell = resolve_cell(validated_copy(CONFIG), "lv", "default", "single", 0)
    assert mixer(["train", "--spec", json.dumps(cell), "--dataset-dir", str(lotka_volterra[0]),
                  "--out", str(run)]) == 0  # fmt: skip
    return lotka_volterra[0], run


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_metrics_carry_the_cell_fingerprint(trained, capsys):
    data, run = trained
    assert mixer(["evaluate", "--model", str(run / "model.pt"), "--dataset-dir", str(data),
                  "--out", str(run / "metrics.json")]) == 0  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    fp = metrics["fingerprint"]
    assert (fp["dataset"], fp["regime"], fp["method"], fp["seed"]) == ("lv", "default", "single", 0)
    assert fp["budget"] == {"outer_steps": 2, "n_ctx": 2, "n_model": 2}
    assert fp["dataset_hash"] == json.loads((data / "meta.json").read_text())["content_hash"]
    assert len(metrics["model_sha256"]) == 64


def test_evaluation_refuses_a_model_of_another_dataset(trained, tmp_path, capsys):
    _, run = trained
    # The same dataset's name and protocol with another seed: same shapes, other data.
    spec = make_spec(generator="ode", systems=["lotka_volterra"], seed=1)
    splits, envs, extra = generate(spec)
    save_dataset(tmp_path / "lv1", splits, envs, {"dataset": "lv", "generator": spec, **extra})
    code = mixer(["evaluate", "--model", str(run / "model.pt"), "--dataset-dir",
                  str(tmp_path / "lv1"), "--out", str(tmp_path / "m.json")])  # fmt: skip
    assert code == 2
    assert "was trained on dataset 'lv'" in one_error_line(capsys)
    assert not (tmp_path / "m.json").exists()


def test_evaluation_refuses_to_file_metrics_under_another_cell(trained, tmp_path, capsys):
    data, run = trained
    other = tmp_path / "lv" / "default" / "mixer" / "seed0" / "metrics.json"
    code = mixer(["evaluate", "--model", str(run / "model.pt"), "--dataset-dir", str(data),
                  "--out", str(other)])  # fmt: skip
    assert code == 2
    line = one_error_line(capsys)
    assert "model of cell lv/default/single/seed0" in line and "method 'single'" in line
    assert not other.exists()


class Payload:
    """Unpickling this runs a shell command (what a crafted model file could do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_crafted_model_file_is_not_executed(tmp_path, lotka_volterra, capsys):
    marker = tmp_path / "pwned"
    torch.save({"format": 2, "x": Payload(marker)}, tmp_path / "model.pt")
    code = mixer(["evaluate", "--model", str(tmp_path / "model.pt"), "--dataset-dir",
                  str(lotka_volterra[0]), "--out", str(tmp_path / "m.json")])  # fmt: skip
    assert code == 2
    assert "is not a model file of mixer-bench" in one_error_line(capsys)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not a model at all", "is not a model file of mixer-bench"),
        (None, "does not exist"),
    ],
)
def test_a_non_model_file_is_one_line(content, expected, tmp_path, lotka_volterra, capsys):
    model = tmp_path / "model.pt"
    if content is not None:
        model.write_bytes(content)
    code = mixer(["evaluate", "--model", str(model), "--dataset-dir", str(lotka_volterra[0]),
                  "--out", str(tmp_path / "m.json")])  # fmt: skip
    assert code == 2 and expected in one_error_line(capsys)


def test_an_old_format_model_is_refused(tmp_path, lotka_volterra, capsys):
    torch.save({"status": "ok", "config": {}}, tmp_path / "model.pt")  # no format: older
    code = mixer(["evaluate", "--model", str(tmp_path / "model.pt"), "--dataset-dir",
                  str(lotka_volterra[0]), "--out", str(tmp_path / "m.json")])  # fmt: skip
    assert code == 2 and "retrain the cell" in one_error_line(capsys)


def test_unwritable_out_fails_before_scoring(trained, tmp_path, capsys):
    data, run = trained
    (tmp_path / "file").write_text("a file, not a folder")
    out = tmp_path / "file" / "metrics.json"
    code = mixer(["evaluate", "--model", str(run / "model.pt"), "--dataset-dir", str(data),
                  "--out", str(out)])  # fmt: skip
    assert code == 2 and f"cannot write {out}" in one_error_line(capsys)


def test_spec_with_missing_keys_and_bad_seed_are_one_line(trained, tmp_path, capsys):
    data, _ = trained
    cell = resolve_cell(validated_copy(CONFIG), "lv", "default", "single", 0)
    del cell["device"]
    args = ["train", "--dataset-dir", str(data), "--out", str(tmp_path / "c")]
    assert mixer([*args, "--spec", json.dumps(cell)]) == 2
    assert "the cell spec lacks device" in one_error_line(capsys)
    cell = resolve_cell(validated_copy(CONFIG), "lv", "default", "single", 0)
    assert mixer([*args, "--spec", json.dumps({**cell, "seed": -5})]) == 2
    assert "seeds.0: -5 is less than the minimum of 0" in one_error_line(capsys)
    assert not (tmp_path / "c").exists()


def test_regime_knobs_beyond_the_dataset_are_errors(trained, tmp_path, capsys):
    data, _ = trained
    for knob, expected in (
        ({"n_families": 5}, "regime n_families 5: the dataset has 3"),
        ({"envs_per_family": 20}, "regime envs_per_family 20: family 0"),
    ):
        config = validated_copy({**CONFIG, "regimes": {"big": knob}})
        cell = resolve_cell(config, "lv", "big", "single", 0)
        args = ["train", "--spec", json.dumps(cell), "--dataset-dir", str(data)]
        assert mixer([*args, "--out", str(tmp_path / "c")]) == 2
        assert expected in one_error_line(capsys)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"methods": {"..": {"learner": "single"}}}, "methods: name '..' is not allowed"),
        ({"regimes": {"a/b": {}}}, "regimes: name 'a/b' is not allowed"),
        ({"seeds": [0, 0, 1]}, "seeds: [0, 0, 1] lists a value twice"),
        ({"seeds": [-1]}, "seeds.0: -1 is less than the minimum of 0"),
        ({"training": {"lr_model": "1.0e3"}}, "YAML reads 1.0e3 as text"),
    ],
)
def test_bad_names_seeds_and_numbers_are_rejected(config, expected):
    with pytest.raises(ConfigError) as err:
        validated_copy(config)
    assert expected in str(err.value)


def test_yaml_error_names_its_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("training:\n  outer_steps: 3\n   lr: [1\n")
    assert mixer(["check-config", str(tmp_path / "bad.yaml")]) == 2
    assert "is not valid YAML at line 3" in one_error_line(capsys)


def test_identity_errors_reach_the_user_as_one_line():
    # The CLI turns MixerError into one line and exit 2; anything else would be a traceback.
    assert issubclass(IdentityError, MixerError)


def interrupted(cell, data, out, monkeypatch) -> None:
    """Train ``cell`` until its first checkpoint is written, then die (like a killed job)."""
    original = Checkpoint.save

    def save_then_die(self, state):
        original(self, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_cell(cell, data, out)
    monkeypatch.setattr(Checkpoint, "save", original)
    assert (out / "checkpoint.pt").is_file()


def resumable_cell(seed=0, **training):
    config = validated_copy(
        {**CONFIG, "training": {**CONFIG["training"], "outer_steps": 3, "checkpoint_every": 1,
                                **training}}
    )  # fmt: skip
    return resolve_cell(config, "lv", "default", "single", seed)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"lr_model": 0.02}, "config_hash"),
        ({"outer_steps": 2}, "budget"),
        ({"seed": 7}, "seed 0 (expected 7)"),
    ],
)
def test_a_resume_needs_the_same_settings(change, expected, tmp_path, lotka_volterra, capsys,
                                          monkeypatch):  # fmt: skip
    data = lotka_volterra[0]
    interrupted(resumable_cell(), data, tmp_path, monkeypatch)
    seed = change.pop("seed", 0)
    cell = resumable_cell(seed, **change)
    capsys.readouterr()
    state = train_cell(cell, data, tmp_path)
    log = capsys.readouterr().err
    assert "not resuming from" in log and expected in log and "starting over" in log
    assert "resumed from" not in log
    rows = (tmp_path / "train_log.csv").read_text().splitlines()
    assert rows[1].startswith("1,") and len(rows) == 1 + state["outer_steps"]
    lr = rows[1].split(",")[rows[0].split(",").index("lr_model")]
    assert float(lr) == cell["training"]["lr_model"]


def test_a_resume_with_the_same_settings_continues(tmp_path, lotka_volterra, capsys, monkeypatch):
    data = lotka_volterra[0]
    interrupted(resumable_cell(), data, tmp_path, monkeypatch)
    capsys.readouterr()
    train_cell(resumable_cell(), data, tmp_path)
    assert "resumed from" in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_crafted_checkpoint_is_not_executed(tmp_path, lotka_volterra, capsys):
    marker = tmp_path / "pwned"
    torch.save({"x": Payload(marker)}, tmp_path / "checkpoint.pt")
    state = train_cell(resumable_cell(), lotka_volterra[0], tmp_path)
    assert state["status"] == "ok" and not marker.exists()
    assert "is unreadable (UnpicklingError); starting over" in capsys.readouterr().err
