# Stage 4: tables of every expected cell, figures, and the material of `snakemake --report`.


# On a cluster these run where Snakemake runs (seconds each): no queue wait for the last step.
localrules:
    aggregate,
    claims,
    literature,
    plots,


rule aggregate:
    input:
        metrics=metrics_targets(),
    output:
        runs=report(
            "results/tables/runs.csv",
            caption="../report/runs.rst",
            category="Tables",
        ),
        summary=report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        markdown="results/tables/summary.md",
        latex="results/tables/summary.tex",
    log:
        "logs/aggregate.log",
    conda:
        "../envs/mixer.yaml"
    threads: 1
    params:
        code=code("aggregate"),
        reference=reference_option(),
    message:
        "Aggregating every expected cell into tables"
    shell:
        "mixer aggregate {params.reference} --out-dir $(dirname {output.runs})"
        " {input.metrics} > {log} 2>&1"


# Our baselines' cells against the figures their authors logged (config key `literature`).
rule literature:
    input:
        runs=rules.aggregate.output.runs,
        anchors=config["literature"],
        curves=literature_curves,
        train_logs=cell_targets("train_log.csv"),
    output:
        table=report(
            "results/tables/literature.csv",
            caption="../report/literature.rst",
            category="Tables",
        ),
        markdown="results/tables/literature.md",
        figure=report(
            "results/figures/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Figures",
            subcategory="Errors",
        ),
    log:
        "logs/literature.log",
    conda:
        "../envs/mixer.yaml"
    threads: 1
    params:
        code=code("literature"),
    message:
        "Setting the baselines against their authors' logged figures"
    shell:
        "mixer literature --runs {input.runs} --anchors {input.anchors}"
        " --out-dir $(dirname {output.table}) --figure {output.figure} > {log} 2>&1"


# The figures read runs.csv, then the metrics.json of every cell it lists and, for family
# names, the meta.json of the dataset folders the cells read: all declared here.
rule plots:
    input:
        runs=rules.aggregate.output.runs,
        metrics=rules.aggregate.input.metrics,
        datasets=[f"{folder}/meta.json" for folder in cell_data_folders()],
    output:
        method_comparison=report(
            "results/figures/method_comparison.png",
            caption="../report/method_comparison.rst",
            category="Figures",
            subcategory="Errors",
        ),
        error_vs_regime=report(
            "results/figures/error_vs_regime.png",
            caption="../report/error_vs_regime.rst",
            category="Figures",
            subcategory="Errors",
        ),
        adaptation_per_env=report(
            "results/figures/adaptation_per_env.png",
            caption="../report/adaptation_per_env.rst",
            category="Figures",
            subcategory="Errors",
        ),
        gate_heatmap=report(
            "results/figures/gate_heatmap.png",
            caption="../report/gate_heatmap.rst",
            category="Figures",
            subcategory="Routing",
        ),
        routing_over_training=report(
            "results/figures/routing_over_training.png",
            caption="../report/routing_over_training.rst",
            category="Figures",
            subcategory="Routing",
        ),
        context_pca=report(
            "results/figures/context_pca.png",
            caption="../report/context_pca.rst",
            category="Figures",
            subcategory="Routing",
        ),
        cost_scaling=report(
            "results/figures/cost_scaling.png",
            caption="../report/cost_scaling.rst",
            category="Figures",
            subcategory="Cost",
        ),
    log:
        "logs/plots.log",
    conda:
        "../envs/mixer.yaml"
    threads: 1
    params:
        code=code("plots"),
    message:
        "Drawing the figures"
    shell:
        "mixer plot --runs {input.runs} --out-dir $(dirname {output.method_comparison})"
        " > {log} 2>&1"


# The paper's three claims judged from runs.csv (config `claims`): the report opens with them
# (Snakemake sorts report categories by name, and "Claims" sorts first).
rule claims:
    input:
        runs=rules.aggregate.output.runs,
    output:
        table=report(
            "results/tables/claims.csv",
            caption="../report/claims.rst",
            category="Claims",
        ),
        markdown="results/tables/claims.md",
        figure=report(
            "results/figures/claims.png",
            caption="../report/claims_figure.rst",
            category="Claims",
        ),
    log:
        "logs/claims.log",
    conda:
        "../envs/mixer.yaml"
    threads: 1
    params:
        claims=shlex.quote(json.dumps(config["claims"], sort_keys=True)),
        code=code("claims"),
    message:
        "Judging the paper's claims from the runs"
    shell:
        "mixer claims --runs {input.runs} --claims {params.claims}"
        " --out-dir $(dirname {output.table}) --figure {output.figure} > {log} 2>&1"
