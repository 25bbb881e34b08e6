# Helpers shared by the rule files (target lists, parameters derived from the config).
import json
import shlex

from mixer.data import SPLITS
from mixer.provenance import source_hash


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


def all_targets():
    return [f for dataset in config["datasets"] for f in dataset_files(dataset)]
