# Stage 2: train one method on one dataset in one regime with one seed (a benchmark cell).


rule train:
    input:
        unpack(cell_data),
    output:
        model="results/runs/{dataset}/{regime}/{method}/seed{seed}/model.pt",
        train_log="results/runs/{dataset}/{regime}/{method}/seed{seed}/train_log.csv",
        routing="results/runs/{dataset}/{regime}/{method}/seed{seed}/routing.npz",
    log:
        "logs/train/{dataset}/{regime}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{regime}/{method}/seed{seed}.tsv"
    # Every training job before any evaluation: the short evaluations then fill both cores at
    # the end instead of one long training job running alone.
    priority: 1
    conda:
        "../envs/mixer.yaml"
    threads: 1
    resources:
        # From the cell's measured cost class and budget (config/costs.csv; config/README.md,
        # "What the paper grid costs"), else the flat defaults of mixer/config/resources.py.
        mem_mb=cell_resource("train", "mem_mb"),
        runtime=cell_resource("train", "runtime"),
        gpu=config["gpus_per_training_job"],
    params:
        spec=cell_spec,
        dataset=dataset_spec,
        code=code("train"),
    message:
        "Training {wildcards.method} on {wildcards.dataset} ({wildcards.regime}), seed {wildcards.seed}"
        " [gpu={resources.gpu}, mem_mb={resources.mem_mb}, runtime={resources.runtime} min]"
    shell:
        "mixer train --spec {params.spec} --dataset-dir $(dirname {input.meta})"
        " --dataset-spec {params.dataset}"
        " --out $(dirname {output.model}) > {log} 2>&1"
