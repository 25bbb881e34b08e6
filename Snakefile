# mixer-bench workflow: config -> datasets -> trained cells -> metrics -> tables, figures, report.
# Logic lives in the `mixer` package; rule files only wire paths to `mixer` commands.
from mixer.config import validate_config


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


validate_config(config)


wildcard_constraints:
    dataset=r"[A-Za-z0-9_-]+",
    regime=r"[A-Za-z0-9_.-]+",
    method=r"[A-Za-z0-9_.-]+",
    seed=r"\d+",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# With --keep-going a failed cell leaves the others running; tables list it as failed.
onerror:
    partial_report()


rule all:
    default_target: True
    input:
        all_targets(),
