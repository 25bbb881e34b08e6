"""The trials of a careful user (issue 26): each bad input ends in one line that names the key
or file and the fix (exit 2, no traceback), and no finished result is lost or overwritten."""

from __future__ import annotations

import json
import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from mixer.cli import main as mixer
from mixer.config import resolve_cell, validate_config
from mixer.errors import ConfigError
from tests.helpers import validated_copy

LV = {"generator": "ode", "systems": ["lotka_volterra"]}
TINY = {
    "datasets": {"lv": LV},
    "training": {"outer_steps": 2, "n_ctx": 2, "n_model": 2},
    "adaptation": {"steps": 3},
    "methods": {
        "single": {"learner": "single", "context_dim": 2, "width": 8, "depth": 1},
        "coda": {"learner": "coda", "context_dim": 2, "width": 8, "depth": 1},
    },
    "experiments": [{"datasets": ["lv"], "methods": ["single", "coda"]}],
    "device": "cpu",
}


def with_(**changes) -> dict:
    config = json.loads(json.dumps(TINY))
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = config
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[key] = value
    return config


CONFIG_CASES = {
    "empty methods": (with_(experiments__0__methods=[]), r"experiments\.0\.methods: \[\] should"),
    "empty datasets": (with_(experiments__0__datasets=[]), r"experiments\.0\.datasets: \[\]"),
    "empty regimes": (with_(experiments__0__regimes=[]), r"experiments\.0\.regimes: \[\]"),
    "reference not a method": (with_(reference_method="singel"), r"reference_method: 'singel'"),
    "negative rtol": (with_(solver={"method": "dopri5", "rtol": -1}), r"solver\.rtol: -1 is"),
    "zero atol of a method": (
        with_(methods__coda__solver={"atol": 0}),
        r"methods\.coda\.solver\.atol: 0 is",
    ),
    "no inner step": (
        with_(training={"outer_steps": 2, "n_ctx": 0, "n_model": 0}),
        r"n_ctx and training\.n_model are both 0.*Fix",
    ),
    "experiment's unknown training key": (
        with_(experiments__0__training={"outer_stepz": 3}),
        r"unknown key 'experiments\[0\]\.training\.outer_stepz'",
    ),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_a_bad_config_is_named_where_it_is_written(case):
    config, message = CONFIG_CASES[case]
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_a_learner_module_with_a_syntax_error(tmp_path, monkeypatch):
    (tmp_path / "broken.py").write_text("class Mine(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = with_(methods__single={"learner": "broken:Mine"})
    with pytest.raises(ConfigError, match=r"module 'broken' has a syntax error at .*broken\.py:1"):
        validate_config(config)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture
def trained(tmp_path, lotka_volterra):
    """(config file, dataset folder named lv, the finished run folder of cell single)."""
    data = tmp_path / "lv"
    shutil.copytree(lotka_volterra[0], data)
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(TINY))
    run = tmp_path / "single"
    args = ["--config", str(config), "--dataset-dir", str(data), "--seed", "0", "--out", str(run)]
    assert mixer(["train", "--method", "single", *args]) == 0
    return config, data, run


def train_args(config, data, out, method="single"):
    return ["train", "--config", str(config), "--method", method, "--seed", "0",
            "--dataset-dir", str(data), "--out", str(out)]  # fmt: skip


def test_a_finished_cell_is_never_overwritten_by_another(trained, capsys):
    config, data, run = trained
    before = (run / "model.pt").read_bytes()
    capsys.readouterr()
    assert mixer(train_args(config, data, run, method="coda")) == 2
    line = one_error_line(capsys)
    assert "the model of another cell, lv/default/single/seed0 (this run is lv/default/coda" in line
    assert "--force" in line
    assert (run / "model.pt").read_bytes() == before
    assert mixer(train_args(config, data, run)) == 0  # the same cell again: allowed
    assert mixer([*train_args(config, data, run, method="coda"), "--force"]) == 0


def test_another_datasets_files_under_a_datasets_name(trained, tmp_path, capsys, control_charts):
    config, data, run = trained
    foreign = tmp_path / "x" / "lv"
    shutil.copytree(control_charts[0], foreign)  # the files of dataset 'cc' under the name lv
    capsys.readouterr()
    assert mixer(train_args(config, foreign, tmp_path / "new")) == 2
    assert "holds dataset 'cc' (its meta.json), not 'lv'" in one_error_line(capsys)
    spec = json.dumps(resolve_cell(validated_copy(TINY), "lv", "default", "single", 0))
    args = ["--dataset-dir", str(foreign), "--out", str(tmp_path / "new")]
    assert mixer(["train", "--spec", spec, *args]) == 2
    assert "holds dataset 'cc'" in one_error_line(capsys)
    args = ["--model", str(run / "model.pt"), "--dataset-dir", str(foreign), "--out"]
    assert mixer(["evaluate", *args, str(tmp_path / "m.json")]) == 2
    assert "holds dataset 'cc'" in one_error_line(capsys)
    # The same name from another config entry: --dataset-spec (the workflow passes it).
    other = json.dumps({**LV, "seed": 5})
    assert mixer(["train", "--spec", spec, "--dataset-dir", str(data), "--dataset-spec", other,
                  "--out", str(tmp_path / "new")]) == 2  # fmt: skip
    assert "generated from another config entry of 'lv'" in one_error_line(capsys)


def test_cli_names_the_valid_choices_and_the_fix(trained, tmp_path, capsys):
    config, data, run = trained
    capsys.readouterr()
    assert mixer(train_args(config, data, tmp_path / "o", method="nope")) == 2
    assert "--method 'nope' is not under `methods`" in (line := one_error_line(capsys))
    assert "defined: single, coda" in line
    assert mixer([*train_args(config, data, tmp_path / "o"), "--regime", "big"]) == 2
    assert "--regime 'big' is not under `regimes`" in one_error_line(capsys)
    spec = json.dumps(resolve_cell(validated_copy(TINY), "lv", "default", "single", 0))
    args = ["--dataset-dir", str(data), "--out", str(tmp_path / "o"), "--seed", "3"]
    assert mixer(["train", "--spec", spec, *args]) == 2
    assert "Fix: leave --seed out" in one_error_line(capsys)
    metrics = str(run / "metrics.json")
    assert mixer(["evaluate", "--model", str(run / "model.pt"), "--dataset-dir", str(data),
                  "--out", metrics]) == 0  # fmt: skip
    capsys.readouterr()
    assert mixer(["aggregate", metrics, "--out-dir", str(tmp_path), "--reference", "x"]) == 2
    assert "--reference 'x' has no cell among those given (methods: single)" in one_error_line(
        capsys
    )


def test_a_checkpoint_or_a_crafted_pickle_as_model(trained, tmp_path, capsys):
    data = trained[1]
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"learner": {}, "log": {}, "outer_step": 3, "fingerprint": {}}, checkpoint)
    out = ["--dataset-dir", str(data), "--out", str(tmp_path / "m.json")]
    capsys.readouterr()
    assert mixer(["evaluate", "--model", str(checkpoint), *out]) == 2
    assert "is a training checkpoint (outer step 3), not a model" in one_error_line(capsys)
    crafted = tmp_path / "crafted.pt"
    crafted.write_bytes(pickle.dumps(shutil.copytree, protocol=4))  # it would run code
    assert mixer(["evaluate", "--model", str(crafted), *out]) == 2
    line = one_error_line(capsys)
    assert "holds code or objects other than tensors" in line and "weights_only" not in line


def test_ctrl_c_of_a_hand_run_train_says_where_the_checkpoint_is(trained, tmp_path):
    data = trained[1]
    long = with_(training={"outer_steps": 10000, "n_ctx": 2, "n_model": 2, "checkpoint_every": 1})
    (tmp_path / "long.yaml").write_text(json.dumps(long))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mixer.cli", *train_args(tmp_path / "long.yaml", data, out)]
    # stderr to a file, not a pipe: a pipe nobody reads while we wait could fill and stop the
    # child before its first checkpoint.
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stream:
        # A shell starts a background job (`.ci/run &`) with SIGINT ignored, which a child
        # inherits and Python then keeps: give the child the default disposition, as a
        # terminal's foreground job has.
        job = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=stream,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 300
        while not (out / "checkpoint.pt").is_file() and time.monotonic() < deadline:
            assert job.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        assert (out / "checkpoint.pt").is_file(), log.read_text()[-2000:]
        job.send_signal(signal.SIGINT)
        try:
            job.wait(timeout=120)
        finally:
            job.kill()
    err = log.read_text()
    assert job.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("mixer train: interrupted;") and "checkpoint.pt resumes it" in last
