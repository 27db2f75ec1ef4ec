"""Reads exported trials (JSON on argv[1]) and prints Optuna's importances for them as JSON:
{"fanova": {...}, "mdi": {...}}. Run with Debian's /usr/bin/python3 (optuna 3.1, sklearn)."""
import json
import sys

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.importance import FanovaImportanceEvaluator, MeanDecreaseImpurityImportanceEvaluator, get_param_importances

optuna.logging.set_verbosity(optuna.logging.WARNING)
data = json.load(open(sys.argv[1]))


def dist(d):
    if d["type"] == "float":
        return FloatDistribution(d["low"], d["high"], log=d["log"], step=d["step"])
    if d["type"] == "int":
        return IntDistribution(d["low"], d["high"], log=d["log"], step=d["step"])
    return CategoricalDistribution(d["choices"])


study = optuna.create_study(direction=data["direction"])
for t in data["trials"]:
    study.add_trial(
        optuna.trial.create_trial(
            params=t["params"], distributions={k: dist(v) for k, v in t["distributions"].items()}, value=t["value"]
        )
    )
print(
    json.dumps(
        {
            "fanova": get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0)),
            "mdi": get_param_importances(study, evaluator=MeanDecreaseImpurityImportanceEvaluator(seed=0)),
        }
    )
)
