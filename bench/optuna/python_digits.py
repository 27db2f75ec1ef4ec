"""The PyTorch digits bench, in one Python process: examples/pytorch-digits/train.py's objective run by
Optuna itself (job {"library": "optuna"}) or by peertune's Python study API (job {"library":
"peertune"}); the same code, TPE defaults, the median pruner. Job on stdin: {"library", "n_trials",
"epochs"}. Prints {"library", "version", "study_s", "n_pruned", "epochs" (trained, over all trials), "best"}.
"""
import json
import os
import sys
import time

job = json.loads(sys.stdin.readline())
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "examples", "pytorch-digits"))
import torch  # noqa: E402
import train  # noqa: E402  (imports peertune_client as optuna)

if job["library"] == "optuna":
    import optuna  # noqa: E402

    train.optuna = optuna  # the example's objective raises optuna.exceptions.TrialPruned: Optuna's own
else:
    optuna = train.optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)
torch.set_num_threads(1)
t0 = time.perf_counter()
study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner())
study.optimize(lambda trial: train.objective(trial, job["epochs"]), n_trials=job["n_trials"])
study_s = time.perf_counter() - t0
pruned = study.get_trials(states=[optuna.trial.TrialState.PRUNED])
epochs = sum(len(t.intermediate_values) for t in study.trials)
print(json.dumps({"library": job["library"], "version": getattr(optuna, "__version__", "peertune_client"),
                  "study_s": study_s, "n_pruned": len(pruned), "epochs": epochs, "best": study.best_value}))
