"""Optuna side of the sample-efficiency benchmark.

Reads jobs (one JSON object per line) on stdin: {"function": <suite.json entry>, "sampler": "tpe" |
"tpe-mv-cl", "seed": int, "n_trials": int}. For each trial it suggests the suite function's parameters
in listed order (honouring conditions), writes {"ask": params} and reads back {"value": float}: the
function itself is evaluated by peertune's TypeScript suite, so both libraries optimize the very same
code. After the last trial it writes {"done": true, "seconds": <time spent inside Optuna and I/O>}.
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
    if kind == "tpe-mv-cl":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    raise ValueError(f"unknown sampler kind {kind!r}; use 'tpe' or 'tpe-mv-cl'")


def suggest(trial, params):
    out = {}
    for p in params:
        cond = p.get("condition")
        if cond is not None and out.get(cond["param"]) != cond["equals"]:
            continue
        name, kind = p["name"], p["type"]
        if kind == "float":
            out[name] = trial.suggest_float(name, p["low"], p["high"], log=p["log"], step=p["step"])
        elif kind == "int":
            out[name] = trial.suggest_int(name, int(p["low"]), int(p["high"]), step=int(p["step"] or 1), log=p["log"])
        elif kind == "categorical":
            out[name] = trial.suggest_categorical(name, p["choices"])
        else:
            raise ValueError(f"parameter {name!r} has unknown type {kind!r}")
    return out


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        job = json.loads(line)
        fn = job["function"]
        study = optuna.create_study(direction="minimize", sampler=make_sampler(job["sampler"], job["seed"]))
        t0 = time.perf_counter()
        for _ in range(job["n_trials"]):
            trial = study.ask()
            send({"ask": suggest(trial, fn["params"])})
            reply = json.loads(sys.stdin.readline())
            study.tell(trial, reply["value"])
        send({"done": True, "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
