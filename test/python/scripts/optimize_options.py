"""Optuna's optimize options and Trial attributes: callbacks, catch, n_jobs, timeout, MaxTrialsCallback,
user attrs, trial.study, datetime_start; a study reloaded from a storage."""
import json
import os
import sys
import tempfile

import optuna
from optuna.trial import TrialState

seen = []


def callback(study, frozen):
    seen.append((frozen.number, frozen.state.name))


def objective(trial):
    x = trial.suggest_float("x", -1, 1)
    assert trial.study.study_name == "opts"
    assert trial.datetime_start is not None
    assert "x" in trial.distributions and trial.params["x"] == x
    trial.set_user_attr("double", 2 * x)
    assert trial.user_attrs["double"] == 2 * x
    if trial.number == 1:
        raise ArithmeticError("caught and recorded")
    return x * x


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="opts", storage=os.environ.get("STUDY_STORAGE"))
    study.optimize(objective, n_trials=8, n_jobs=2, catch=(ArithmeticError,), callbacks=[callback])
    failed = study.get_trials(states=(TrialState.FAIL,))
    try:
        study.optimize(lambda t: 1 / 0, n_trials=3)
        uncaught = "not raised"
    except ZeroDivisionError:
        uncaught = "raised"
    limited = optuna.create_study()
    limited.optimize(lambda t: t.suggest_int("i", 0, 9), n_trials=50,
                     callbacks=[optuna.study.MaxTrialsCallback(5, states=(TrialState.COMPLETE,))])
    timed = optuna.create_study()
    timed.optimize(lambda t: t.suggest_float("y", 0, 1), timeout=1.0)
    out = {"callbacks": len(seen), "failed": len(failed), "uncaught": uncaught,
           "after_uncaught": len(study.trials), "limited": len(limited.trials), "timed_some": len(timed.trials) > 0,
           "user_attr": study.best_trial.user_attrs["double"] == 2 * study.best_params["x"]}
    if os.environ.get("STUDY_STORAGE"):
        again = optuna.load_study(study_name="opts", storage=os.environ["STUDY_STORAGE"])
        out["reloaded"] = len(again.trials)
        try:
            optuna.load_study(study_name="nope", storage=os.environ["STUDY_STORAGE"])
        except KeyError:
            out["missing"] = "KeyError"
    print(json.dumps(out))
