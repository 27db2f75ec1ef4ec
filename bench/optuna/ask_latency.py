"""Optuna side of the ask-latency benchmark.

Job on stdin: {"spaces": [...], "sizes": [...], "n_asks": int, "warmup": int, "seed": int,
"samplers": ["tpe", "tpe-mv"]}. For each sampler, space and history size: a study gets `size`
completed trials at random points (add_trials, no sampling), then `warmup + n_asks` trials are asked,
all parameters suggested, and told at once; the ask+suggest time of the last n_asks is recorded.
Prints one JSON object: {"results": [{"sampler", "space", "size", "ms": [...]}]}.
"""
import json
import random
import sys
import time
import warnings

import optuna

from spaces import space, suggest, value

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def random_params(rng, sp):
    return {name: rng.choice(d.choices) if isinstance(d, optuna.distributions.CategoricalDistribution) else rng.uniform(d.low, d.high) for name, d in sp}


def main():
    job = json.loads(sys.stdin.readline())
    results = []
    for kind in job["samplers"]:
        for space_name in job["spaces"]:
            sp = space(space_name)
            dists = dict(sp)
            for size in job["sizes"]:
                rng = random.Random(job["seed"])
                sampler = optuna.samplers.TPESampler(seed=job["seed"], multivariate=(kind == "tpe-mv"))
                study = optuna.create_study(sampler=sampler)
                history = []
                for _ in range(size):
                    p = random_params(rng, sp)
                    history.append(optuna.trial.create_trial(params=p, distributions=dists, value=value(p)))
                study.add_trials(history)
                ms = []
                for i in range(job["warmup"] + job["n_asks"]):
                    t0 = time.perf_counter()
                    trial = study.ask()
                    p = suggest(trial, sp)
                    t1 = time.perf_counter()
                    study.tell(trial, value(p))
                    if i >= job["warmup"]:
                        ms.append((t1 - t0) * 1000)
                results.append({"sampler": kind, "space": space_name, "size": size, "ms": ms})
                print(f"optuna {kind} {space_name} {size}: median {sorted(ms)[len(ms) // 2]:.2f} ms", file=sys.stderr, flush=True)
    print(json.dumps({"version": optuna.__version__, "results": results}))


if __name__ == "__main__":
    main()
