# Stage 3: score a trained cell (in-domain test, adaptation, routing, cost) into metrics.json.


rule evaluate:
    input:
        unpack(cell_data),
        model=rules.train.output.model,
    output:
        metrics="results/runs/{dataset}/{regime}/{method}/seed{seed}/metrics.json",
    log:
        "logs/evaluate/{dataset}/{regime}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{regime}/{method}/seed{seed}.tsv"
    conda:
        "../envs/mixer.yaml"
    threads: 1
    resources:
        # From the cell's measured cost class and budget (config/costs.csv; config/README.md,
        # "What the paper grid costs"), else the flat defaults of mixer/config/resources.py.
        mem_mb=cell_resource("evaluate", "mem_mb"),
        runtime=cell_resource("evaluate", "runtime"),
    params:
        code=code("evaluate"),
        dataset=dataset_spec,
    message:
        "Evaluating {wildcards.method} on {wildcards.dataset} ({wildcards.regime}), seed {wildcards.seed}"
    shell:
        "mixer evaluate --model {input.model} --dataset-dir $(dirname {input.meta})"
        " --dataset-spec {params.dataset}"
        " --out {output.metrics} > {log} 2>&1"
