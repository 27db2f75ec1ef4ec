"""Search spaces shared by the Optuna latency and end-to-end scripts; they mirror the TypeScript side
(bench/ask-latency.bench.ts, bench/e2e.bench.ts) parameter for parameter."""
import optuna

CHOICES = ["a", "b", "c", "d"]


def space(name):
    """Returns [(param name, distribution)] in suggestion order."""
    if name == "float10":
        return [(f"x{i}", optuna.distributions.FloatDistribution(-5.0, 5.0)) for i in range(10)]
    if name == "cat3float7":
        cats = [(f"c{i}", optuna.distributions.CategoricalDistribution(CHOICES)) for i in range(3)]
        floats = [(f"x{i}", optuna.distributions.FloatDistribution(-5.0, 5.0)) for i in range(7)]
        return cats + floats
    raise ValueError(f"unknown space {name!r}; use 'float10' or 'cat3float7'")


def value(params):
    """A cheap objective with one basin (sphere on the floats, a penalty per non-'a' choice)."""
    v = 0.0
    for k, x in params.items():
        v += (x - 1.0) ** 2 if isinstance(x, float) else (0.0 if x == "a" else 1.0)
    return v


def suggest(trial, sp):
    out = {}
    for name, d in sp:
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            out[name] = trial.suggest_categorical(name, d.choices)
        else:
            out[name] = trial.suggest_float(name, d.low, d.high)
    return out
