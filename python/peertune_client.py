"""peertune_client: tune a Python script with peertune. One file, standard library only.

A peertune worker runs your script once per trial (a "command objective")::

    peertune worker --study-name mnist --data-dir ./peer -- python3 train.py --epochs 10

and your script asks the worker for parameters and reports progress, with Optuna's method names::

    import peertune_client

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        layers = trial.suggest_int("layers", 1, 3)
        act = trial.suggest_categorical("activation", ["relu", "tanh"])
        for epoch in range(10):
            acc = train_one_epoch(...)
            trial.report(acc, epoch)
            if trial.should_prune():
                raise peertune_client.TrialPruned()
        trial.set_user_attr("epochs_run", epoch + 1)
        return acc

    if __name__ == "__main__":
        peertune_client.run(objective)

`run` returns the objective's value (or list of values, for a multi-objective study) to the worker,
turns TrialPruned into a PRUNED trial, and lets any other exception fail the trial (its traceback goes
to stderr, and the worker keeps the tail of stderr on the failed trial).

The protocol (version 1): JSON lines over the child's stdio. The script writes one request per line
on stdout; the worker answers each with one line on the script's stdin. Requests:

    {"op": "suggest", "name": "lr", "distribution": {"type": "float", "low": 0.0001, "high": 0.1,
     "log": true, "step": null}}                                    -> {"ok": true, "value": 0.003}
    {"op": "report", "value": 0.91, "step": 3}                      -> {"ok": true, "prune": false}
    {"op": "should_prune"}                                          -> {"ok": true, "prune": false}
    {"op": "set_user_attr", "key": "k", "value": <JSON>}            -> {"ok": true}
    {"op": "result", "value": 0.93}  or  {"op": "result", "values": [0.93, 12]}   (final)
    {"op": "pruned"}   (final)          {"op": "fail", "reason": "..."}   (final)

A refused request gets {"ok": false, "error": "..."} (raised here as ValueError). Anything on stdout
that is not a request fails the trial, so this module moves the script's own prints (and anything
written to file descriptor 1, by C extensions too) to stderr as soon as the first trial is opened.
The worker sets PEERTUNE_PROTOCOL, PEERTUNE_STUDY_NAME, PEERTUNE_TRIAL_NUMBER and PEERTUNE_TRIAL_ID.
"""

import json
import math
import os
import sys

__all__ = ["Trial", "TrialPruned", "get_trial", "run", "PROTOCOL_VERSION"]

PROTOCOL_VERSION = 1


class TrialPruned(Exception):
    """Raise this from the objective (after should_prune() says so) to end the trial as PRUNED."""


class _Channel(object):
    """The protocol stream: the original stdout for requests, stdin for answers."""

    def __init__(self):
        if os.environ.get("PEERTUNE_PROTOCOL") is None:
            raise RuntimeError(
                "peertune_client: this script was not started by a peertune worker "
                "(PEERTUNE_PROTOCOL is not set); run it as: "
                "peertune worker --study-name NAME -- python3 " + (sys.argv[0] or "script.py")
            )
        sys.stdout.flush()
        # Keep a private copy of fd 1 for the protocol, then point fd 1 (and sys.stdout) at stderr
        # so ordinary prints cannot corrupt the protocol stream.
        self._out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._in = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin

    def request(self, msg):
        self._out.write(json.dumps(msg, allow_nan=False) + "\n")
        self._out.flush()
        line = self._in.readline()
        if not line:
            raise RuntimeError("peertune_client: the worker closed the protocol stream")
        if isinstance(line, bytes):
            line = line.decode("utf-8")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise ValueError(answer.get("error", "the worker refused the request"))
        return answer


class Trial(object):
    """The trial this process runs. Same method names as optuna.trial.Trial."""

    def __init__(self, channel):
        self._ch = channel
        self._finished = False
        self._last_prune = None
        self.number = int(os.environ.get("PEERTUNE_TRIAL_NUMBER", "-1"))
        self.trial_id = os.environ.get("PEERTUNE_TRIAL_ID", "")
        self.study_name = os.environ.get("PEERTUNE_STUDY_NAME", "")
        self.params = {}

    def _suggest(self, name, distribution):
        value = self._ch.request({"op": "suggest", "name": name, "distribution": distribution})["value"]
        self.params[name] = value
        return value

    def suggest_float(self, name, low, high, step=None, log=False):
        return self._suggest(name, {"type": "float", "low": low, "high": high, "step": step, "log": bool(log)})

    def suggest_int(self, name, low, high, step=1, log=False):
        return int(self._suggest(name, {"type": "int", "low": low, "high": high, "step": step, "log": bool(log)}))

    def suggest_categorical(self, name, choices):
        return self._suggest(name, {"type": "categorical", "choices": list(choices)})

    # Optuna's older names, so scripts written against them run unchanged.
    def suggest_uniform(self, name, low, high):
        return self.suggest_float(name, low, high)

    def suggest_loguniform(self, name, low, high):
        return self.suggest_float(name, low, high, log=True)

    def suggest_discrete_uniform(self, name, low, high, q):
        return self.suggest_float(name, low, high, step=q)

    def report(self, value, step):
        """Reports an intermediate value (e.g. validation accuracy after an epoch)."""
        value = float(value)
        if math.isnan(value):
            raise ValueError("report(): value is NaN")
        self._last_prune = bool(self._ch.request({"op": "report", "value": value, "step": int(step)})["prune"])

    def should_prune(self):
        """Whether the study's pruner says to stop this trial now (answered with the last report)."""
        if self._last_prune is not None:
            decision, self._last_prune = self._last_prune, None
            return decision
        return bool(self._ch.request({"op": "should_prune"})["prune"])

    def set_user_attr(self, key, value):
        self._ch.request({"op": "set_user_attr", "key": key, "value": value})

    def finish(self, value):
        """Sends the final value (a number, or a list for a multi-objective study). `run` calls this."""
        if self._finished:
            raise RuntimeError("peertune_client: the trial already sent its final message")
        if isinstance(value, (list, tuple)):
            msg = {"op": "result", "values": [float(v) for v in value]}
        else:
            msg = {"op": "result", "value": float(value)}
        self._finished = True
        self._ch.request(msg)

    def prune(self):
        """Ends the trial as PRUNED (what `run` does when the objective raises TrialPruned)."""
        if not self._finished:
            self._finished = True
            self._ch.request({"op": "pruned"})

    def fail(self, reason):
        if not self._finished:
            self._finished = True
            self._ch.request({"op": "fail", "reason": str(reason)})


_trial = None


def get_trial():
    """The trial of this process (opened on first call)."""
    global _trial
    if _trial is None:
        _trial = Trial(_Channel())
    return _trial


def run(objective):
    """Runs objective(trial) for the worker's trial and sends its result. Returns the result."""
    trial = get_trial()
    try:
        result = objective(trial)
    except TrialPruned:
        trial.prune()
        return None
    if result is None:
        raise ValueError("peertune_client.run: the objective returned None; return a number (or a list of numbers)")
    trial.finish(result)
    return result
