"""Learners declare their keys; the validator builds each method's schema from them; one
torch-free resolver turns a config into a cell, and the CLI re-checks what it receives."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import pytest

from mixer.config import experiment_cells, resolve_cell, validate_cell, validate_config
from mixer.errors import ConfigError
from mixer.methods.catalog import build_catalog, learner_spec, load_catalog

BASE = {
    "methods": {
        "coda": {"learner": "coda", "context_dim": 2},
        "mix": {"learner": "mixer", "backbone": "geps", "context_dim_per_expert": 2},
    },
    "regimes": {"default": {}, "k5": {"n_experts": 5}},
}


def config(**methods) -> dict:
    cfg = copy.deepcopy(BASE)
    cfg["methods"].update(methods)
    return validate_config(cfg)


def test_catalog_is_what_the_classes_declare():
    # Fails when a built-in learner changed without `mixer learners --write-catalog`.
    assert load_catalog() == json.loads(json.dumps(build_catalog()))


def test_backbone_enum_comes_from_the_backbone_registry():
    from mixer.models import BACKBONES

    # A mixture runs any backbone: a built-in name, or a user's Expert as module:Class.
    assert learner_spec("mixer").keys()["backbone"]["anyOf"][0]["enum"] == list(BACKBONES)
    assert learner_spec("coda").keys()["backbone"]["enum"] == ["coda", "plrnn"]
    assert "backbone" not in learner_spec("ncf").keys()


def test_every_registry_takes_a_name_or_module_path(tmp_path, monkeypatch):
    """Learners, backbones, systems and generators: one style, one message."""
    from mixer.data.generate import GENERATORS
    from mixer.data.systems import SYSTEMS
    from mixer.methods.catalog import LEARNERS
    from mixer.models import BACKBONES, GEPSExpert

    (tmp_path / "mine.py").write_text(
        textwrap.dedent(
            """
            from mixer.models import GEPSExpert

            class Wide(GEPSExpert):
                hyperparameters = {**GEPSExpert.hyperparameters, "spread": {"type": "number"}}

            def ramp(spec):
                return "ramp"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert BACKBONES.get("geps") is GEPSExpert and issubclass(
        BACKBONES.get("mine:Wide"), GEPSExpert
    )
    assert GENERATORS.get("mine:ramp")({}) == "ramp"
    assert SYSTEMS.get("lotka_volterra").name == "lotka_volterra"
    for registry, kind in ((LEARNERS, "learner"), (BACKBONES, "backbone"), (SYSTEMS, "system")):
        with pytest.raises(ConfigError, match=rf"unknown {kind} 'nope'\. Valid names: .*; or 'pa"):
            registry.get("nope")
        with pytest.raises(ConfigError, match=rf"{kind} 'mine:ramp': 'ramp' is not a"):
            registry.get("mine:ramp")
    # A user backbone in a config: its own keys are accepted, a learner with fixed ones refuses.
    cfg = config(w={"learner": "mixer", "backbone": "mine:Wide", "spread": 0.5})
    assert cfg["methods"]["w"]["spread"] == 0.5
    with pytest.raises(ConfigError, match=r"does not run backbone 'mine:Wide'.*--write-catalog"):
        config(c={"learner": "coda", "backbone": "mine:Wide"})


def test_undeclared_key_is_rejected_with_the_learners_keys():
    with pytest.raises(ConfigError) as err:
        config(coda={"learner": "coda", "gate_every": 3})
    text = str(err.value)
    assert "'methods.coda.gate_every'" in text and "learner 'coda'" in text
    assert "coda_lambda_ctx" in text and "context_dim" in text  # what coda does declare
    with pytest.raises(ConfigError, match="learner 'ncf' does not run backbone 'geps'"):
        config(n={"learner": "ncf", "backbone": "geps"})
    # A backbone's own keys come with that backbone only.
    with pytest.raises(ConfigError, match=r"'methods\.m\.latent_dim'.*with backbone 'geps'"):
        config(m={"learner": "mixer", "latent_dim": 8})
    assert config(m={"learner": "mixer", "backbone": "plrnn", "latent_dim": 8})["methods"]["m"][
        "tf_alpha"
    ] == pytest.approx(0.5)


def test_defaults_are_filled_per_learner():
    cfg = config()
    assert cfg["methods"]["coda"]["coda_lambda_ctx"] == 1e-4
    assert "gate_every" not in cfg["methods"]["coda"]
    assert cfg["methods"]["mix"]["gate_every"] == 12


def test_resolve_cell_applies_regime_and_derived_sizes():
    cfg = config()
    cell = resolve_cell(cfg, "lv", "k5", "mix", 3)
    assert (cell["n_experts"], cell["context_dim"], cell["seed"]) == (5, 10, 3)
    assert cell["training"] == cfg["training"] and cell["regime_knobs"]["n_experts"] == 5
    assert "n_experts" not in resolve_cell(cfg, "lv", "k5", "coda", 0)  # coda has no K


def test_validate_cell_accepts_a_resolved_cell_and_rejects_a_tampered_one():
    cell = resolve_cell(config(), "lv", "k5", "mix", 0)
    assert validate_cell(copy.deepcopy(cell)) == cell
    with pytest.raises(ConfigError, match="inconsistent in context_dim"):
        validate_cell({**cell, "context_dim": 4})
    broken = {k: v for k, v in cell.items() if k != "device"}
    with pytest.raises(ConfigError, match="lacks device"):
        validate_cell(broken)
    with pytest.raises(ConfigError, match="seeds"):
        validate_cell({**cell, "seed": -5})
    with pytest.raises(ConfigError, match=r"'methods\.mix\.nope'"):
        validate_cell({**cell, "nope": 1})


def test_user_learner_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "mylearner.py").write_text(
        textwrap.dedent(
            """
            from mixer.methods import Learner

            class Mine(Learner):
                hyperparameters = {"alpha": {"type": "number", "default": 0.5}}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = config(u={"learner": "mylearner:Mine"})
    assert cfg["methods"]["u"]["alpha"] == 0.5
    with pytest.raises(ConfigError, match=r"'methods\.u\.beta'.*declares.*alpha"):
        config(u={"learner": "mylearner:Mine", "beta": 1})
    with pytest.raises(ConfigError, match="not a Learner subclass"):
        config(u={"learner": "mylearner:Learner2"})
    with pytest.raises(ConfigError, match="cannot import module 'nomodule'"):
        config(u={"learner": "nomodule:X"})


def test_resolving_every_cell_of_the_default_config_imports_no_torch():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        from mixer.config import resolve_cell
        from mixer.config import load_config
        cfg = load_config("config/config.yaml")
        n = 0
        for exp in cfg["experiments"]:
            for d in exp["datasets"]:
                for r in exp["regimes"]:
                    for m in exp["methods"]:
                        resolve_cell(cfg, d, r, m, 0)
                        n += 1
        print(n)
        """
    )
    from tests.workflow.test_workflow import REPO

    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) > 10


def test_an_experiment_sets_the_budget_of_its_cells():
    cfg = copy.deepcopy(BASE)
    cfg["methods"]["coda"]["training"] = {"lr_model": 5e-3}
    ode = {"generator": "ode", "systems": ["lotka_volterra"]}
    cfg["datasets"] = {"lv": ode, "gly": {**ode, "systems": ["glycolytic"]}}
    cfg["experiments"] = [
        {"datasets": ["lv"], "methods": ["coda", "mix"],
         "training": {"outer_steps": 7}, "adaptation": {"steps": 9}},
        {"datasets": ["gly"], "methods": ["coda"]},
    ]  # fmt: skip
    cfg = validate_config(cfg)
    lv = resolve_cell(cfg, "lv", "default", "coda", 0)
    assert lv["training"]["outer_steps"] == 7 and lv["adaptation"]["steps"] == 9
    assert lv["training"]["lr_model"] == 5e-3  # the method's own key is kept
    assert validate_cell(copy.deepcopy(lv)) == lv  # the CLI accepts the budgeted cell
    gly = resolve_cell(cfg, "gly", "default", "coda", 0)
    assert gly["training"]["outer_steps"] == cfg["training"]["outer_steps"] != 7
    cfg["experiments"].append(
        {"datasets": ["lv"], "methods": ["coda"], "training": {"outer_steps": 8}}
    )
    with pytest.raises(ConfigError, match=r"cell lv/default/coda is in experiments\[0\], "):
        validate_config(cfg)


def test_an_experiment_may_run_its_cells_on_its_own_seeds():
    cfg = copy.deepcopy(BASE)
    cfg["datasets"] = {"lv": {"generator": "ode", "systems": ["lotka_volterra"]}}
    cfg["seeds"] = [0, 1, 2]
    cfg["experiments"] = [
        {"datasets": ["lv"], "methods": ["coda"]},
        {"datasets": ["lv"], "methods": ["mix"], "seeds": [0, 1]},
    ]
    cells = experiment_cells(validate_config(cfg))
    assert cells == [("lv", "default", "coda", s) for s in (0, 1, 2)] + [
        ("lv", "default", "mix", s) for s in (0, 1)
    ]
    cfg["experiments"][1]["seeds"] = []
    with pytest.raises(ConfigError, match="seeds"):
        validate_config(cfg)


def test_solver_names_come_from_the_solver_table():
    from mixer.config import schema
    from mixer.models.integrate.solvers import SOLVERS, TABLEAUS

    assert schema()["$defs"]["solver"]["properties"]["method"]["enum"] == list(SOLVERS)
    assert set(TABLEAUS) < set(SOLVERS)
    cfg = config(h={"learner": "coda", "solver": {"method": "heun3"}})
    assert cfg["methods"]["h"]["solver"]["method"] == "heun3"
    with pytest.raises(ConfigError, match=r"solver\.method: 'rk5' is not one of \['euler'"):
        validate_config({"solver": {"method": "rk5"}})


def test_cells_are_ordered_with_numbers_read_as_numbers():
    """runs.csv, the tables and the figures list regimes as a reader counts them."""
    from mixer.config import experiment_cells

    regimes = ["traj32", "traj4", "traj16", "traj1", "fam10", "fam2"]
    config = {
        "seeds": [1, 0],
        "experiments": [{"datasets": ["d"], "regimes": regimes, "methods": ["m"]}],
    }
    order = [(regime, seed) for _, regime, _, seed in experiment_cells(config)]
    assert [r for r, s in order if s == 0] == [
        "fam2",
        "fam10",
        "traj1",
        "traj4",
        "traj16",
        "traj32",
    ]
    assert order[:2] == [("fam2", 0), ("fam2", 1)]
