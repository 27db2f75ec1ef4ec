"""Optuna side of the end-to-end benchmark: a single-process study of n_trials on a trivial objective
with Optuna's default sampler (TPE) and logging silenced. Job on stdin: {"n_trials": int, "seed": int}.
Prints {"import_s", "study_s", "best"}: the time to import optuna, and to create and optimize the study.
"""
import json
import sys
import time

t_import = time.perf_counter()
import optuna  # noqa: E402

import_s = time.perf_counter() - t_import
optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial):
    x = trial.suggest_float("x", -10.0, 10.0)
    y = trial.suggest_float("y", -10.0, 10.0)
    return (x - 2.0) ** 2 + (y + 1.0) ** 2


def main():
    job = json.loads(sys.stdin.readline())
    t0 = time.perf_counter()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=job["seed"]))
    study.optimize(objective, n_trials=job["n_trials"])
    study_s = time.perf_counter() - t0
    print(json.dumps({"version": optuna.__version__, "import_s": import_s, "study_s": study_s, "best": study.best_value}))


if __name__ == "__main__":
    main()
