# Stage 1: generate every dataset of the config into results/data/{dataset}/.


rule generate_dataset:
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
    params:
        spec=dataset_spec,
        code=source_hash("data"),
    message:
        "Generating dataset {wildcards.dataset}"
    shell:
        "mixer generate --dataset {wildcards.dataset} --spec {params.spec}"
        " --out $(dirname {output.meta}) > {log} 2>&1"
