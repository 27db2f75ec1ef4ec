"""One worker of a study shared through the storage (as with Optuna and an RDB): joins or creates the
study, runs its trials, then waits until the whole swarm's trials are visible."""
import json
import os
import time

import optuna


def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    return (x - 1) ** 2


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = os.environ["STUDY_STORAGE"]
    total = int(os.environ["TOTAL_TRIALS"])
    study = optuna.create_study(study_name="shared", storage=storage, load_if_exists=True)
    study.optimize(objective, n_trials=int(os.environ["N_TRIALS"]))
    deadline = time.time() + 60
    while len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) < total and time.time() < deadline:
        time.sleep(0.1)
    # Stay up a moment for the other peer to see this one's last trials too.
    time.sleep(float(os.environ.get("LINGER", "0")))
    print(json.dumps({"n_complete": len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))),
                      "best_value": study.best_value, "numbers": sorted(t.number for t in study.trials)}))
