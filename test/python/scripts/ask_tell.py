"""Optuna's ask-and-tell interface, with fixed distributions and a pruned and a failed trial."""
import json

import optuna
from optuna.distributions import FloatDistribution, IntDistribution


if __name__ == "__main__":
    study = optuna.create_study(direction="maximize")
    numbers = []
    for i in range(12):
        trial = study.ask({"lr": FloatDistribution(1e-3, 1.0, log=True), "units": IntDistribution(8, 64)})
        lr = trial.params["lr"]
        units = trial.params["units"]
        extra = trial.suggest_categorical("opt", ["sgd", "adam"])
        numbers.append(trial.number)
        if i == 3:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif i == 5:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, units / 64 - abs(lr - 0.1) + (0.1 if extra == "adam" else 0.0))
    states = [t.state.name for t in study.trials]
    print(json.dumps({"numbers": numbers, "states": states, "best_value": study.best_value,
                      "best_params_keys": sorted(study.best_params), "distributions":
                      sorted(type(d).__name__ for d in study.best_trial.distributions.values())}))
