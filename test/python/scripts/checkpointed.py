"""A command objective that checkpoints every step (test/python/checkpoint-resume.test.ts).

Each step adds step * 10 + token to an accumulator and saves the state as a checkpoint. With
PT_HANG_AT=k it stops after saving step k and waits to be killed (the machine loss). A trial that
resumes (a retry) reads the checkpoint and goes on from the next step. A trial that has nothing to
resume and runs without PT_HANG_AT is a short filler trial."""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "python"))
import peertune_client as optuna  # noqa: E402

STEPS = 6
HANG_AT = int(os.environ.get("PT_HANG_AT", "0"))
work = tempfile.mkdtemp(prefix="pt-ckpy-")


def objective(trial):
    token = trial.suggest_int("token", 1, 9)
    ck = trial.get_checkpoint()
    if ck is None and not HANG_AT:
        time.sleep(0.3)
        return 0.0
    state = {"step": 0, "acc": 0}
    if ck is not None:
        with open(ck["path"]) as f:
            state = json.load(f)
        print("resumed at step %d with acc %d from %s" % (state["step"] + 1, state["acc"], ck["trial_id"]), file=sys.stderr)
    for step in range(state["step"] + 1, STEPS + 1):
        state = {"step": step, "acc": state["acc"] + step * 10 + token}
        path = os.path.join(work, "state-%d.json" % step)
        with open(path, "w") as f:
            json.dump(state, f)
        saved = trial.save_checkpoint(path, step=step, metrics={"acc": state["acc"]})
        trial.report(state["acc"], step)
        print("saved step %d seq %d" % (step, saved["seq"]), file=sys.stderr)
        if step == HANG_AT:
            print("hanging after step %d" % step, file=sys.stderr)
            sys.stderr.flush()
            time.sleep(3600)
    return float(state["acc"])


optuna.run(objective)
