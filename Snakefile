# mixer-bench workflow: config -> datasets (-> runs -> metrics -> tables, figures, report).
# Logic lives in the `mixer` package; rule files only wire paths to `mixer` commands.
from mixer.config import validate_config


configfile: "config/config.yaml"


validate_config(config)


wildcard_constraints:
    dataset=r"[A-Za-z0-9_-]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"


rule all:
    default_target: True
    input:
        all_targets(),
