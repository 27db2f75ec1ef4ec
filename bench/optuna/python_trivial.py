"""Framework cost per trial from Python: n_trials of a trivial two-float objective with TPE (seed 0),
logging silenced, through Optuna (job {"library": "optuna"}) or peertune_client (job {"library":
"peertune"}); the same script otherwise. Prints {"import_s", "study_s", "best"}.
"""
import json
import os
import sys
import time

job = json.loads(sys.stdin.readline())
t_import = time.perf_counter()
if job["library"] == "optuna":
    import optuna
else:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    import peertune_client as optuna
import_s = time.perf_counter() - t_import
optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial):
    x = trial.suggest_float("x", -10.0, 10.0)
    y = trial.suggest_float("y", -10.0, 10.0)
    return (x - 2.0) ** 2 + (y + 1.0) ** 2


t0 = time.perf_counter()
study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
study.optimize(objective, n_trials=job["n_trials"])
study_s = time.perf_counter() - t0
print(json.dumps({"library": job["library"], "import_s": import_s, "study_s": study_s, "best": study.best_value}))
