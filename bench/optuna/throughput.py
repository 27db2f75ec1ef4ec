"""Optuna side of the replication throughput benchmark: one worker process of a shared study.

Usage: throughput.py <mode> with a JSON job on stdin's first line.
  create: {"storage": ..., "study": name}        creates the study, prints {"ok": true}
  worker: {"storage": ..., "study": name, "seed", "seconds"}
          loads the study, prints {"ev": "ready"}, waits for a line "go" on stdin (so every worker
          starts its window together, after Python and Optuna are imported), runs the trivial
          objective with RandomSampler until `seconds` pass, prints {"done", "errors", "error"}.
  count:  {"storage": ..., "study": name}        prints the study's trial counts by state.

`storage` is {"kind": "rdb", "url": ...} or {"kind": "journal", "path": ...}. The objective is the
same as peertune's side: x = suggest_float("x", -10, 10), value (x - 2) ** 2, no sleep.
An exception out of the storage (lock timeouts, serialization failures) ends the worker's optimize
call; it is counted and the worker goes on until its window closes, as a user's retry loop would.
"""
import json
import sys
import time

import optuna  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)


def make_storage(spec):
    if spec["kind"] == "rdb":
        return optuna.storages.RDBStorage(spec["url"])
    if spec["kind"] == "journal":
        return optuna.storages.JournalStorage(optuna.storages.JournalFileStorage(spec["path"]))
    raise ValueError("storage kind must be rdb or journal, got %r" % (spec["kind"],))


def objective(trial):
    x = trial.suggest_float("x", -10.0, 10.0)
    return (x - 2.0) ** 2


def main():
    mode = sys.argv[1]
    job = json.loads(sys.stdin.readline())
    storage = make_storage(job["storage"])
    if mode == "create":
        optuna.create_study(storage=storage, study_name=job["study"], direction="minimize")
        print(json.dumps({"ok": True}), flush=True)
        return
    if mode == "count":
        study = optuna.load_study(storage=storage, study_name=job["study"])
        counts = {}
        for t in study.get_trials(deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        print(json.dumps(counts), flush=True)
        return
    study = optuna.load_study(storage=storage, study_name=job["study"], sampler=optuna.samplers.RandomSampler(seed=job["seed"]))
    print(json.dumps({"ev": "ready"}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    done = [0]
    errors = 0
    last_error = None

    def count(_study, _trial):
        done[0] += 1

    end = time.perf_counter() + job["seconds"]
    while True:
        left = end - time.perf_counter()
        if left <= 0:
            break
        try:
            study.optimize(objective, timeout=left, callbacks=[count])
        except Exception as e:  # noqa: BLE001 - storage errors are what this benchmark counts
            errors += 1
            last_error = "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
    print(json.dumps({"ev": "ran", "done": done[0], "errors": errors, "error": last_error}), flush=True)


if __name__ == "__main__":
    main()
