"""In the style of Optuna's faq/enqueue_trial example: try known-good params first."""
import json

import optuna


def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_int("y", -5, 5)
    trial.set_user_attr("sum", x + y)
    return x ** 2 + y ** 2


if __name__ == "__main__":
    study = optuna.create_study()
    study.enqueue_trial({"x": 0.0, "y": 0})
    study.enqueue_trial({"x": 1.0, "y": 1}, user_attrs={"source": "manual"})
    study.optimize(objective, n_trials=10)
    first = study.trials[0]
    second = study.trials[1]
    print(json.dumps({"n": len(study.trials), "first_params": first.params, "second_params": second.params,
                      "second_attrs": second.user_attrs, "best_value": study.best_value,
                      "best_number": study.best_trial.number}))
