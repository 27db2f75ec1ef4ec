"""Optuna's simple example, in the style of examples/sklearn_simple.py (a quadratic instead of a data set)."""
import json
import os

import optuna


def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    n = trial.suggest_int("n", 1, 5)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    return (x - 2) ** 2 + n + (0.5 if kind == "b" else 0.0)


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", storage=os.environ.get("STUDY_STORAGE"),
                                sampler=optuna.samplers.TPESampler(seed=3))
    study.optimize(objective, n_trials=40)
    trial = study.best_trial
    states = [t.state.name for t in study.trials]
    try:
        columns = list(study.trials_dataframe().columns)
    except ImportError:  # no pandas here
        columns = None
    print(json.dumps({"n": len(study.trials), "best_value": study.best_value, "best_params": study.best_params,
                      "best_number": trial.number, "states": states, "columns": columns,
                      "complete": len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))),
                      "duration_ok": all(t.duration is not None for t in study.trials)}))
