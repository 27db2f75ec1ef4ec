"""In the style of Optuna's multi_objective/pytorch_simple example: two objectives, the Pareto front."""
import json

import optuna


def objective(trial):
    x = trial.suggest_float("x", 0, 5)
    y = trial.suggest_float("y", 0, 3)
    return 4 * x ** 2 + 4 * y ** 2, (x - 5) ** 2 + (y - 5) ** 2


if __name__ == "__main__":
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.NSGAIISampler(seed=1))
    study.optimize(objective, n_trials=40, timeout=300)
    print("Number of finished trials: ", len(study.trials))
    front = study.best_trials
    dominated = 0
    for a in front:
        for b in front:
            if all(p <= q for p, q in zip(b.values, a.values)) and any(p < q for p, q in zip(b.values, a.values)):
                dominated += 1
    try:
        study.best_trial
        single = "no error"
    except RuntimeError:
        single = "RuntimeError"
    print(json.dumps({"n": len(study.trials), "front": len(front), "dominated": dominated, "best_trial": single,
                      "directions": [d.name for d in study.directions], "values_len": len(front[0].values)}))
