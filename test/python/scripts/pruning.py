"""In the style of Optuna's pytorch_simple example: report each epoch, prune with the median pruner."""
import json

import optuna
from optuna.trial import TrialState


def objective(trial):
    lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
    loss = 1.0
    for epoch in range(10):
        loss = loss * (1 - min(lr, 0.9) * 0.5) + abs(lr - 0.05)
        trial.report(loss, epoch)
        if trial.should_prune():
            raise optuna.exceptions.TrialPruned()
    return loss


if __name__ == "__main__":
    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
                                sampler=optuna.samplers.TPESampler(seed=7))
    study.optimize(objective, n_trials=30, timeout=600)
    pruned = study.get_trials(deepcopy=False, states=[TrialState.PRUNED])
    complete = study.get_trials(deepcopy=False, states=[TrialState.COMPLETE])
    print("Study statistics: ")
    print("  Number of finished trials: ", len(study.trials))
    print("  Number of pruned trials: ", len(pruned))
    print("  Number of complete trials: ", len(complete))
    trial = study.best_trial
    print("  Value: ", trial.value)
    print(json.dumps({"n": len(study.trials), "pruned": len(pruned), "complete": len(complete),
                      "pruned_have_value": all(t.value is not None for t in pruned),
                      "last_steps": sorted(set(t.last_step for t in pruned)),
                      "best": trial.value, "iv": len(trial.intermediate_values)}))
