"""Optuna side of the multi-objective benchmark.

Reads jobs (one JSON object per line) on stdin: {"n_vars": int, "n_objectives": int, "sampler": "tpe" |
"tpe-mv" | "nsga2", "seed": int, "n_trials": int}. Each trial suggests x0..x{n_vars-1} in [0, 1], writes
{"ask": params} and reads back {"values": [float, ...]}: the problem is evaluated by peertune's
TypeScript benchmark, so both libraries optimize the very same code. After the last trial it writes
{"done": true, "seconds": <time spent inside Optuna and I/O>}.
"""
import json
import sys
import time
import warnings

import optuna

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(kind, seed):
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "tpe-mv":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise ValueError(f"unknown sampler kind {kind!r}; use 'tpe', 'tpe-mv' or 'nsga2'")


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        job = json.loads(line)
        study = optuna.create_study(
            directions=["minimize"] * job["n_objectives"], sampler=make_sampler(job["sampler"], job["seed"])
        )
        t0 = time.perf_counter()
        for _ in range(job["n_trials"]):
            trial = study.ask()
            send({"ask": {f"x{i}": trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(job["n_vars"])}})
            reply = json.loads(sys.stdin.readline())
            study.tell(trial, reply["values"])
        send({"done": True, "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
