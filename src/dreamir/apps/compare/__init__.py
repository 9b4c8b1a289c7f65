"""`dreamir compare`: train every objective on the same data and budget, evaluate, one table + plot.

For each dataset of the comparison config:
1. training data is built from the dataset's own corpus (label-free; never its queries or qrels),
   once, into OUT/<dataset>/train.jsonl;
2. each objective is trained with the same examples, steps, seed, retriever start and frozen LLM
   (the `base` run settings; `per_objective.<name>` may add settings of that objective only), in
   OUT/<dataset>/<objective>/;
3. every trained retriever, the untrained start and BM25 are evaluated on the split with the
   evaluation code of `dreamir eval`.
Finished objectives leave OUT/<dataset>/<objective>/result.json and are not trained again, and an
interrupted training resumes from its checkpoint, so re-running the command continues the work.
Writes OUT/compare.json ({track: {dataset: {method: {metric: fraction}}}}), OUT/compare.md and
OUT/compare.png; `load_results(OUT)` and `run_result(run folder)` read them back.

The package: `config` (the comparison's schema, its runs' configs) → `results` (stored results, seeds pooled,
paired tests, the public readers) → `report` (table, plot, files) → `run` (plan, train or reuse, evaluate).
"""

from dreamir.apps.compare.config import (
    CONTROL_SUFFIX,
    CompareConfig,
    DatasetConfig,
    load_compare_config,
    run_config,
    training_data,
    training_data_path,
)
from dreamir.apps.compare.report import format_compare_table
from dreamir.apps.compare.results import load_results, run_result
from dreamir.apps.compare.run import precompute_compare, run_compare

__all__ = [
    "CONTROL_SUFFIX",
    "CompareConfig",
    "DatasetConfig",
    "format_compare_table",
    "load_compare_config",
    "load_results",
    "precompute_compare",
    "run_compare",
    "run_config",
    "run_result",
    "training_data",
    "training_data_path",
]
