"""PBT from the Python study API (test/python/pbt.test.ts): a noisy quadratic trained by SGD whose
best learning rate falls over time; a continuation resumes from the member it cloned."""
import json
import os
import random
import sys
import tempfile

import peertune_client as optuna
from peertune_client.distributions import FloatDistribution

work = tempfile.mkdtemp(prefix="pt-pbt-py-")
STEPS = 24
resumed = []


def objective(trial):
    lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
    ck = trial.get_checkpoint()
    state = {"step": 0, "w": 5.0}
    if ck is not None:
        with open(ck["path"]) as f:
            state = json.load(f)
        resumed.append({"trial": trial.number, "from": ck["trial_id"], "step": ck["step"], "saved_step": state["step"]})
    rng = random.Random(trial.number)
    loss = state["w"] ** 2
    for step in range(state["step"] + 1, STEPS + 1):
        state["w"] -= lr * 2 * state["w"] + rng.gauss(0, 0.01)
        state["step"] = step
        loss = state["w"] ** 2
        path = os.path.join(work, "t%d-%d.json" % (trial.number, step))
        with open(path, "w") as f:
            json.dump(state, f)
        trial.save_checkpoint(path, step=step, metrics={"loss": loss})
        trial.report(loss, step)
        if step < STEPS and trial.should_prune():
            raise optuna.TrialPruned()
    return loss


pbt = optuna.pruners.PopulationBasedTraining(
    perturbation_interval=4, population_size=4, seed=3,
    hyperparam_mutations={"lr": FloatDistribution(1e-3, 1.0, log=True)})
study = optuna.create_study(direction="minimize", pruner=pbt, sampler=optuna.samplers.RandomSampler(seed=3))
study.optimize(objective, n_trials=60, n_jobs=4)
trials = study.trials
children = [t for t in trials if "pbtParent" in t.system_attrs]
print(json.dumps({
    "n": len(trials),
    "members": len(set(t.system_attrs.get("pbtMember", t.trial_id) for t in trials)),
    "children": len(children),
    "pruned": sum(1 for t in trials if t.state == optuna.trial.TrialState.PRUNED),
    "resumed": resumed,
    "start_steps": [t.system_attrs.get("pbtStartStep") for t in children],
}))
