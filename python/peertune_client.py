"""peertune_client: Optuna's Python API on peertune. One file, standard library only.

Two ways to use it.

1. The study in Python (Optuna's API). Replace ``import optuna`` with
   ``import peertune_client as optuna`` and the script runs as before::

       import peertune_client as optuna

       def objective(trial):
           x = trial.suggest_float("x", -10, 10)
           return (x - 2) ** 2

       study = optuna.create_study(direction="minimize")      # in memory, like Optuna
       study.optimize(objective, n_trials=100)
       print(study.best_params)

   For a swarm, change the ``storage=`` argument only: ``storage="peer:./peer-a"`` keeps a replica in
   ./peer-a and listens for peers; ``storage="peer:./peer-b?join=/ip4/10.0.0.1/tcp/7171/p2p/12D3..."``
   joins one (``join=`` repeatable, also ``listen=``, ``swarm_key=``), or pass
   ``optuna.PeerStorage(data_dir, join=[...], listen=[...], swarm_key=...)``. The objective runs in
   this Python process; a peertune peer (``peertune serve``) runs as a child process and holds the
   study. It is found through $PEERTUNE_CLI (a path to the peertune command or its main.js), else
   ``peertune`` on PATH, else ``dist/cli/main.js`` of the repository this file is in.

2. A script that a peertune worker runs (a "command objective")::

       peertune worker --study-name mnist --data-dir ./peer -- python3 train.py

   where train.py ends with ``peertune_client.run(objective)``. With a worker that speaks protocol
   version 2, one Python process runs trial after trial (imports paid once); an exception fails that
   trial only and the process goes on. Under an older worker it runs one trial and exits.

The command protocol (JSON lines over the child's stdio; the script writes requests on stdout and
reads answers on stdin; version 2 adds hello/next)::

    {"op": "hello", "protocol": 2}                                  -> {"ok": true, "protocol": 2}
    {"op": "next"}             -> {"ok": true, "trial": {"number": 3, "trial_id": "...", ...}}
                               or {"ok": true, "stop": true}
    {"op": "suggest", "name": "lr", "distribution": {"type": "float", "low": 0.0001, "high": 0.1,
     "log": true, "step": null}}                                    -> {"ok": true, "value": 0.003}
    {"op": "report", "value": 0.91, "step": 3}                      -> {"ok": true, "prune": false}
    {"op": "should_prune"}                                          -> {"ok": true, "prune": false}
    {"op": "set_user_attr", "key": "k", "value": <JSON>}            -> {"ok": true}
    {"op": "result", "value": 0.93}  or  {"op": "result", "values": [0.93, 12]}   (final)
    {"op": "pruned"}   (final)          {"op": "fail", "reason": "..."}   (final)

A refused request gets {"ok": false, "error": "..."} (raised here as ValueError). Anything on stdout
that is not a request fails the trial, so this module moves the script's own prints (and anything
written to file descriptor 1, by C extensions too) to stderr as soon as the protocol is opened.
"""

import atexit
import datetime
import enum
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
import types


def _submodule(name, **attrs):
    """A submodule (``peertune_client.trial``, ...) so ``from peertune_client.trial import TrialState``
    works as ``from optuna.trial import TrialState`` does."""
    mod = types.ModuleType(__name__ + "." + name)
    mod.__dict__.update(attrs)
    sys.modules[mod.__name__] = mod
    return mod

__all__ = [
    "create_study", "load_study", "delete_study", "get_all_study_names", "Study", "Trial",
    "FrozenTrial", "TrialState", "StudyDirection", "TrialPruned", "PeerStorage", "samplers",
    "pruners", "distributions", "exceptions", "logging", "trial", "study", "run", "get_trial",
    "PROTOCOL_VERSION",
]

PROTOCOL_VERSION = 2


# ---------------------------------------------------------------------------------------------
# Errors, states, directions (Optuna's names).

class PeertuneError(Exception):
    """Base of this module's errors (Optuna's OptunaError)."""


class TrialPruned(PeertuneError):
    """Raise this from the objective (after should_prune() says so) to end the trial as PRUNED."""


class DuplicatedStudyError(PeertuneError):
    """A study of that name exists already (pass load_if_exists=True to reuse it)."""


class StorageInternalError(PeertuneError):
    """The peertune peer failed or went away."""


class AmbiguousStudyError(PeertuneError):
    """Several studies in the replica share the name, none created or run here (anyone may create a
    study of any name): pass ``study_id=`` (one of ``study_ids``) to choose one."""

    def __init__(self, message, study_ids=()):
        super(AmbiguousStudyError, self).__init__(message)
        self.study_ids = list(study_ids)


exceptions = _submodule("exceptions", 
    OptunaError=PeertuneError, PeertuneError=PeertuneError, TrialPruned=TrialPruned,
    DuplicatedStudyError=DuplicatedStudyError, StorageInternalError=StorageInternalError,
    AmbiguousStudyError=AmbiguousStudyError,
)


class TrialState(enum.IntEnum):
    RUNNING = 0
    COMPLETE = 1
    PRUNED = 2
    FAIL = 3
    WAITING = 4

    def __repr__(self):
        return "TrialState.%s" % self.name

    def is_finished(self):
        return self not in (TrialState.RUNNING, TrialState.WAITING)


class StudyDirection(enum.IntEnum):
    NOT_SET = 0
    MINIMIZE = 1
    MAXIMIZE = 2


def _direction(d):
    if isinstance(d, StudyDirection):
        d = d.name.lower()
    d = str(d).lower()
    if d not in ("minimize", "maximize"):
        raise ValueError('direction must be "minimize" or "maximize", got %r' % (d,))
    return d


# ---------------------------------------------------------------------------------------------
# Distributions.

class BaseDistribution(object):
    def _wire(self):
        raise NotImplementedError

    def __eq__(self, other):
        return isinstance(other, BaseDistribution) and self._wire() == other._wire()

    def __hash__(self):
        return hash(json.dumps(self._wire(), sort_keys=True))

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % kv for kv in sorted(vars(self).items())))


class FloatDistribution(BaseDistribution):
    def __init__(self, low, high, log=False, step=None):
        self.low, self.high, self.log, self.step = float(low), float(high), bool(log), step

    def _wire(self):
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log, "step": self.step}


class IntDistribution(BaseDistribution):
    def __init__(self, low, high, log=False, step=1):
        self.low, self.high, self.log, self.step = int(low), int(high), bool(log), int(step)

    def _wire(self):
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log, "step": self.step}


class CategoricalDistribution(BaseDistribution):
    def __init__(self, choices):
        self.choices = tuple(choices)

    def _wire(self):
        return {"type": "categorical", "choices": list(self.choices)}


def _distribution_from_wire(d):
    if d.get("type") == "float":
        return FloatDistribution(d["low"], d["high"], d.get("log", False), d.get("step"))
    if d.get("type") == "int":
        return IntDistribution(d["low"], d["high"], d.get("log", False), d.get("step", 1))
    return CategoricalDistribution(d.get("choices", []))


distributions = _submodule("distributions", 
    BaseDistribution=BaseDistribution, FloatDistribution=FloatDistribution, IntDistribution=IntDistribution,
    CategoricalDistribution=CategoricalDistribution,
    UniformDistribution=lambda low, high: FloatDistribution(low, high),
    LogUniformDistribution=lambda low, high: FloatDistribution(low, high, log=True),
    IntUniformDistribution=lambda low, high, step=1: IntDistribution(low, high, step=step),
)


# ---------------------------------------------------------------------------------------------
# Samplers and pruners: Optuna's constructors and snake_case options, sent as peertune specs.

def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


class _Algorithm(object):
    _name = None

    def __init__(self, **options):
        self._options = {}
        for k, v in options.items():
            if callable(v):
                raise ValueError("%s: option %s takes a value here, not a function (the algorithm runs in the peertune peer)" % (type(self).__name__, k))
            if v is not None:
                self._options[_camel(k)] = v

    def _spec(self):
        return {"name": self._name, "options": dict(self._options)}

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % kv for kv in self._options.items()))


class TPESampler(_Algorithm):
    _name = "tpe"

    def __init__(self, consider_prior=True, prior_weight=1.0, consider_magic_clip=True, consider_endpoints=False,
                 n_startup_trials=10, n_ei_candidates=24, gamma=None, weights=None, seed=None, *,
                 multivariate=False, group=False, warn_independent_sampling=True, constant_liar=False):
        _Algorithm.__init__(self, prior_weight=prior_weight, consider_magic_clip=consider_magic_clip,
                            consider_endpoints=consider_endpoints, n_startup_trials=n_startup_trials,
                            n_ei_candidates=n_ei_candidates, gamma=gamma, weights=weights, seed=seed,
                            multivariate=multivariate, group=group, constant_liar=constant_liar)


class RandomSampler(_Algorithm):
    _name = "random"

    def __init__(self, seed=None):
        _Algorithm.__init__(self, seed=seed)


class GridSampler(_Algorithm):
    _name = "grid"

    def __init__(self, search_space, seed=None):
        _Algorithm.__init__(self, seed=seed)
        self._options["searchSpace"] = {k: list(v) for k, v in search_space.items()}


class NSGAIISampler(_Algorithm):
    _name = "nsga2"

    def __init__(self, *, population_size=50, mutation_prob=None, crossover=None, crossover_prob=0.9,
                 swapping_prob=0.5, seed=None, constraints_func=None):
        if crossover is not None or constraints_func is not None:
            raise ValueError("NSGAIISampler: crossover and constraints_func are not supported by peertune")
        _Algorithm.__init__(self, population_size=population_size, mutation_prob=mutation_prob,
                            crossover_prob=crossover_prob, swapping_prob=swapping_prob, seed=seed)


samplers = _submodule("samplers", TPESampler=TPESampler, RandomSampler=RandomSampler, GridSampler=GridSampler,
                                 NSGAIISampler=NSGAIISampler)


class MedianPruner(_Algorithm):
    _name = "median"

    def __init__(self, n_startup_trials=5, n_warmup_steps=0, interval_steps=1, *, n_min_trials=1):
        _Algorithm.__init__(self, n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps,
                            interval_steps=interval_steps, n_min_trials=n_min_trials)


class PercentilePruner(_Algorithm):
    _name = "percentile"

    def __init__(self, percentile, n_startup_trials=5, n_warmup_steps=0, interval_steps=1, *, n_min_trials=1):
        _Algorithm.__init__(self, percentile=percentile, n_startup_trials=n_startup_trials,
                            n_warmup_steps=n_warmup_steps, interval_steps=interval_steps, n_min_trials=n_min_trials)


class SuccessiveHalvingPruner(_Algorithm):
    _name = "successive-halving"

    def __init__(self, min_resource="auto", reduction_factor=4, min_early_stopping_rate=0, bootstrap_count=0):
        _Algorithm.__init__(self, min_resource=min_resource, reduction_factor=reduction_factor,
                            min_early_stopping_rate=min_early_stopping_rate, bootstrap_count=bootstrap_count)


class HyperbandPruner(_Algorithm):
    _name = "hyperband"

    def __init__(self, min_resource=1, max_resource="auto", reduction_factor=3, bootstrap_count=0):
        _Algorithm.__init__(self, min_resource=min_resource, max_resource=max_resource,
                            reduction_factor=reduction_factor, bootstrap_count=bootstrap_count)


class ThresholdPruner(_Algorithm):
    _name = "threshold"

    def __init__(self, lower=None, upper=None, n_warmup_steps=0, interval_steps=1):
        _Algorithm.__init__(self, lower=lower, upper=upper, n_warmup_steps=n_warmup_steps, interval_steps=interval_steps)


class PatientPruner(_Algorithm):
    _name = "patient"

    def __init__(self, wrapped_pruner, patience, min_delta=0.0):
        _Algorithm.__init__(self, patience=patience, min_delta=min_delta)
        if wrapped_pruner is not None:
            self._options["wrapped"] = wrapped_pruner._spec()


class NopPruner(_Algorithm):
    _name = "nop"


class PopulationBasedTraining(_Algorithm):
    """Ray Tune's PBT (asynchronous, or ``synch=True``) as the study's pruner; options are Ray's names,
    and those left out take Ray's defaults in the peer. ``hyperparam_mutations`` maps a parameter to a
    distribution (``FloatDistribution(...)``, ``IntDistribution(...)``) or a list of choices. The
    objective starts from ``trial.get_checkpoint()`` (a continuation gets the member it clones), saves
    with ``trial.save_checkpoint`` at least once per perturbation interval, reports each step and
    raises ``TrialPruned`` when ``trial.should_prune()`` says it was exploited."""
    _name = "pbt"

    def __init__(self, time_attr=None, perturbation_interval=None, burn_in_period=None, hyperparam_mutations=None,
                 quantile_fraction=None, resample_probability=None, perturbation_factors=None,
                 custom_explore_fn=None, synch=None, *, population_size=None, seed=None):
        if custom_explore_fn is not None:
            raise ValueError("PopulationBasedTraining: custom_explore_fn is a function; it runs in the peertune peer, so it cannot be given from Python")
        _Algorithm.__init__(self, time_attr=time_attr, perturbation_interval=perturbation_interval,
                            burn_in_period=burn_in_period, quantile_fraction=quantile_fraction,
                            resample_probability=resample_probability,
                            perturbation_factors=list(perturbation_factors) if perturbation_factors is not None else None,
                            synch=synch, population_size=population_size, seed=seed)
        if hyperparam_mutations is not None:
            self._options["hyperparamMutations"] = dict(
                (str(k), v._wire() if isinstance(v, BaseDistribution) else list(v)) for k, v in hyperparam_mutations.items())


pruners = _submodule("pruners", MedianPruner=MedianPruner, PercentilePruner=PercentilePruner,
                                SuccessiveHalvingPruner=SuccessiveHalvingPruner, HyperbandPruner=HyperbandPruner,
                                ThresholdPruner=ThresholdPruner, PatientPruner=PatientPruner, NopPruner=NopPruner,
                                PopulationBasedTraining=PopulationBasedTraining)


# ---------------------------------------------------------------------------------------------
# Logging (Optuna's levels; the peer prints Optuna's log lines on this process's stderr).

_verbosity = 20


def _set_verbosity(level):
    global _verbosity
    _verbosity = int(level)
    if _verbosity <= 10:
        name = "debug"
    elif _verbosity <= 20:
        name = "info"
    elif _verbosity <= 30:
        name = "warning"
    elif _verbosity <= 50:
        name = "error"
    else:
        name = "silent"
    os.environ["PEERTUNE_LOG_LEVEL"] = name
    if _peer is not None:
        _peer.request({"op": "set_verbosity", "level": name})


logging = _submodule("logging", 
    DEBUG=10, INFO=20, WARNING=30, WARN=30, ERROR=40, CRITICAL=50, FATAL=50,
    set_verbosity=_set_verbosity, get_verbosity=lambda: _verbosity,
    disable_default_handler=lambda: None, enable_default_handler=lambda: None,
    disable_propagation=lambda: None, enable_propagation=lambda: None,
)


# ---------------------------------------------------------------------------------------------
# Numbers JSON cannot carry travel as strings.

def _to_wire(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


def _from_wire(v):
    if v == "NaN":
        return float("nan")
    if v == "Infinity":
        return float("inf")
    if v == "-Infinity":
        return float("-inf")
    return v


def _parse_time(s):
    if not s:
        return None
    d = datetime.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return d.astimezone().replace(tzinfo=None)  # Optuna's datetimes are naive local time


# ---------------------------------------------------------------------------------------------
# The peer child process (`peertune serve`).

def _find_cli():
    explicit = os.environ.get("PEERTUNE_CLI")
    if explicit:
        return explicit
    on_path = shutil.which("peertune")
    if on_path:
        return on_path
    here = os.path.dirname(os.path.abspath(__file__))
    beside = os.path.join(os.path.dirname(here), "dist", "cli", "main.js")
    if os.path.exists(beside):
        return beside
    raise StorageInternalError(
        "peertune_client: cannot find the peertune command; set PEERTUNE_CLI to its path (or to dist/cli/main.js "
        "of a built checkout), put peertune on PATH, or run `npm run build` in the repository next to this file")


class _Peer(object):
    """The `peertune serve` child: one JSON request per line on its stdin, one answer per line back."""

    def __init__(self):
        cli = _find_cli()
        cmd = [cli, "serve"]
        if cli.endswith(".js") or cli.endswith(".mjs"):
            node = os.environ.get("PEERTUNE_NODE") or shutil.which("node")
            if not node:
                raise StorageInternalError("peertune_client: node is not on PATH (needed to run %s); set PEERTUNE_NODE" % cli)
            cmd = [node, cli, "serve"]
        env = dict(os.environ)
        env.setdefault("PEERTUNE_LOG_LEVEL", os.environ.get("PEERTUNE_LOG_LEVEL", "info"))
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self._in = self._proc.stdin
        self._out = self._proc.stdout
        self._lock = threading.Lock()
        self.request({"op": "hello"})

    def request(self, msg):
        line = (json.dumps(msg, allow_nan=False) + "\n").encode("utf-8")
        with self._lock:
            try:
                self._in.write(line)
                self._in.flush()
                answer = self._out.readline()
            except (BrokenPipeError, OSError):
                answer = b""
        if not answer:
            code = self._proc.poll()
            raise StorageInternalError("peertune_client: the peertune peer exited (code %s); its stderr above says why" % code)
        answer = json.loads(answer.decode("utf-8"))
        if not answer.get("ok"):
            kind = answer.get("error_type", "")
            text = answer.get("error", "the peer refused the request")
            if kind == "DuplicatedStudyError":
                raise DuplicatedStudyError(text)
            if kind == "AmbiguousStudyError":
                raise AmbiguousStudyError(text, answer.get("study_ids") or ())
            if kind in ("StudyNotFoundError", "UsageError") and "no study named" in text:
                raise KeyError(text)
            raise ValueError(text)
        return answer

    def close(self):
        try:
            self.request({"op": "close"})
        except Exception:
            pass
        try:
            self._in.close()
            self._proc.wait(timeout=30)
        except Exception:
            self._proc.kill()


_peer = None
_peer_lock = threading.Lock()


def _get_peer():
    global _peer
    with _peer_lock:
        if _peer is None:
            _peer = _Peer()
            atexit.register(_close_peer)
        return _peer


def _close_peer():
    global _peer
    if _peer is not None:
        p, _peer = _peer, None
        p.close()


class PeerStorage(object):
    """A peer's replica: a data dir, the peers to join, the addresses to listen on, a swarm key file.

    ``exclude_peers``: peer ids whose trials every study here reads as if they did not exist (samplers,
    pruners, budgets and best trials follow; the CLI's --ignore-peer). ``trust_peers``: read only trials
    owned by these peers and this one (--trust-peer). ``allow_peers`` gates connections only.
    """

    def __init__(self, data_dir, join=None, listen=None, swarm_key=None, mdns=False, allow_peers=None,
                 exclude_peers=None, trust_peers=None):
        self.data_dir = os.path.abspath(data_dir)
        self.join = list(join or [])
        self.listen = list(listen or [])
        self.swarm_key = swarm_key
        self.mdns = bool(mdns)
        self.allow_peers = list(allow_peers or [])
        self.exclude_peers = list(exclude_peers or [])
        self.trust_peers = list(trust_peers or [])
        self._handle = None
        self.peer_id = None

    @classmethod
    def from_url(cls, url):
        """``peer:<data dir>?join=<multiaddr>&listen=<multiaddr>&swarm_key=<file>&exclude_peer=<id>&trust_peer=<id>``
        (join, listen, exclude_peer and trust_peer repeatable)."""
        from urllib.parse import parse_qs
        rest = url[len("peer:"):]
        path, _, query = rest.partition("?")
        q = parse_qs(query)
        return cls(path or "./peertune-data", join=q.get("join"), listen=q.get("listen"),
                   swarm_key=(q.get("swarm_key") or [None])[0], mdns=(q.get("mdns") or ["0"])[0] in ("1", "true"),
                   exclude_peers=q.get("exclude_peer"), trust_peers=q.get("trust_peer"))

    def _open(self):
        if self._handle is None:
            a = _get_peer().request({"op": "open_storage", "data_dir": self.data_dir, "join": self.join, "listen": self.listen,
                                     "swarm_key": self.swarm_key, "mdns": self.mdns, "allow_peers": self.allow_peers,
                                     "exclude_peers": self.exclude_peers, "trust_peers": self.trust_peers})
            self._handle = a["storage"]
            self.peer_id = a.get("peer_id")
        return self._handle

    def multiaddrs(self):
        """Addresses other peers can join (``join=``) this one by."""
        return _get_peer().request({"op": "multiaddrs", "storage": self._open()})["multiaddrs"]


_storages = {}


def _storage_handle(storage):
    """A storage handle in the peer: a new in-memory storage for None, else the peer storage's."""
    if storage is None:
        return _get_peer().request({"op": "memory_storage"})["storage"]
    if isinstance(storage, str):
        if not storage.startswith("peer:"):
            raise ValueError("storage %r: peertune stores studies in peers; use None (in memory), "
                             "\"peer:<data dir>?join=<multiaddr>\" or peertune_client.PeerStorage(...)" % storage)
        storage = _storages.setdefault(storage, PeerStorage.from_url(storage))
    if isinstance(storage, PeerStorage):
        return storage._open()
    raise ValueError("storage must be None, a \"peer:...\" string or a PeerStorage, got %r" % (storage,))


# ---------------------------------------------------------------------------------------------
# Trials.

class FrozenTrial(object):
    """A finished (or running) trial as Optuna shows it."""

    def __init__(self, number, state, values, datetime_start, datetime_complete, params, distributions,
                 user_attrs, system_attrs, intermediate_values, trial_id=None, owner=None):
        self.number = number
        self.state = state
        self._values = list(values) if values is not None else None
        self.datetime_start = datetime_start
        self.datetime_complete = datetime_complete
        self.params = params
        self.distributions = distributions
        self.user_attrs = user_attrs
        self.system_attrs = system_attrs
        self.intermediate_values = intermediate_values
        self._trial_id = trial_id
        self.trial_id = trial_id
        self.owner = owner

    @classmethod
    def _from_json(cls, j):
        return cls(
            number=j["number"], state=TrialState[j["state"]],
            values=[_from_wire(v) for v in j["values"]] if j.get("values") is not None else None,
            datetime_start=_parse_time(j.get("datetime_start")), datetime_complete=_parse_time(j.get("datetime_complete")),
            params=dict(j.get("params") or {}),
            distributions={k: _distribution_from_wire(d) for k, d in (j.get("distributions") or {}).items()},
            user_attrs=dict(j.get("user_attrs") or {}), system_attrs=dict(j.get("system_attrs") or {}),
            intermediate_values={int(k): _from_wire(v) for k, v in (j.get("intermediate_values") or {}).items()},
            trial_id=j.get("trial_id"), owner=j.get("owner"))

    @property
    def value(self):
        if self._values is None:
            return None
        if len(self._values) != 1:
            raise RuntimeError("This attribute is not available during multi-objective optimization.")
        return self._values[0]

    @property
    def values(self):
        return None if self._values is None else list(self._values)

    @property
    def duration(self):
        if self.datetime_start and self.datetime_complete:
            return self.datetime_complete - self.datetime_start
        return None

    @property
    def last_step(self):
        return max(self.intermediate_values) if self.intermediate_values else None

    def __repr__(self):
        return ("FrozenTrial(number=%r, state=%r, values=%r, datetime_start=%r, datetime_complete=%r, params=%r, "
                "user_attrs=%r, intermediate_values=%r)" % (self.number, self.state, self._values, self.datetime_start,
                                                            self.datetime_complete, self.params, self.user_attrs,
                                                            self.intermediate_values))


class Trial(object):
    """The trial the objective is given; Optuna's method names.

    Backed either by a study in a peertune peer (the study API) or by a peertune worker (a command
    objective run with ``run(objective)``)."""

    def __init__(self, backend, number, trial_id, study=None, params=None, datetime_start=None):
        self._backend = backend
        self.number = number
        self._trial_id = trial_id
        self.trial_id = trial_id
        self.study = study
        self.study_name = study.study_name if study is not None else os.environ.get("PEERTUNE_STUDY_NAME", "")
        self._params = dict(params or {})
        self._distributions = {}
        self._user_attrs = {}
        self.datetime_start = datetime_start
        self._last_prune = None
        self._finished = False

    @property
    def params(self):
        return dict(self._params)

    @property
    def distributions(self):
        return dict(self._distributions)

    @property
    def user_attrs(self):
        return dict(self._user_attrs)

    @property
    def system_attrs(self):
        return {}

    def _suggest(self, name, dist):
        if name in self._params and self._distributions.get(name) == dist:
            return self._params[name]
        value = self._backend.suggest(self, name, dist._wire())
        self._params[name] = value
        self._distributions[name] = dist
        return value

    def suggest_float(self, name, low, high, *, step=None, log=False):
        return float(self._suggest(name, FloatDistribution(low, high, log, step)))

    def suggest_int(self, name, low, high, step=1, log=False):
        return int(self._suggest(name, IntDistribution(low, high, log, step)))

    def suggest_categorical(self, name, choices):
        return self._suggest(name, CategoricalDistribution(choices))

    # Optuna's older names, so scripts written against them run unchanged.
    def suggest_uniform(self, name, low, high):
        return self.suggest_float(name, low, high)

    def suggest_loguniform(self, name, low, high):
        return self.suggest_float(name, low, high, log=True)

    def suggest_discrete_uniform(self, name, low, high, q):
        return self.suggest_float(name, low, high, step=q)

    def report(self, value, step):
        """Reports an intermediate value (e.g. validation accuracy after an epoch)."""
        self._last_prune = bool(self._backend.report(self, _to_wire(float(value)), int(step)))

    def should_prune(self):
        """Whether the study's pruner says to stop this trial now (answered with the last report)."""
        if self._last_prune is not None:
            return self._last_prune
        return bool(self._backend.should_prune(self))

    def set_user_attr(self, key, value):
        self._backend.set_user_attr(self, key, value)
        self._user_attrs[key] = value

    def set_system_attr(self, key, value):
        pass

    def save_checkpoint(self, path, step=None, metrics=None):
        """Saves a file or a directory as this trial's newest checkpoint (Ray Tune's checkpoint in
        ``tune.report``). Returns once the peer holds a copy: the caller may delete its own. The peer
        copies it to other peers and keeps the checkpoints its keep rules say."""
        msg = {"op": "save_checkpoint", "path": os.path.abspath(str(path))}
        if step is not None:
            msg["step"] = int(step)
        if metrics is not None:
            msg["metrics"] = dict((str(k), None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in dict(metrics).items())
        return self._backend.checkpoint(self, msg)["checkpoint"]

    def get_checkpoint(self):
        """This trial's latest checkpoint, else that of the trial it retries or resumes (fetched from a
        peer that holds it): a dict with ``path``, ``step``, ``metrics`` and ``trial_id``, or None."""
        return self._backend.checkpoint(self, {"op": "get_checkpoint"})["checkpoint"]

    # The command-objective side: `run` calls these.
    def finish(self, value):
        """Sends the final value (a number, or a list for a multi-objective study)."""
        if self._finished:
            raise RuntimeError("peertune_client: the trial already sent its final message")
        self._finished = True
        if isinstance(value, (list, tuple)):
            self._backend.send({"op": "result", "values": [_to_wire(float(v)) for v in value]})
        else:
            self._backend.send({"op": "result", "value": _to_wire(float(value))})

    def prune(self):
        if not self._finished:
            self._finished = True
            self._backend.send({"op": "pruned"})

    def fail(self, reason):
        if not self._finished:
            self._finished = True
            self._backend.send({"op": "fail", "reason": str(reason)})


class _StudyBackend(object):
    """Trial requests answered by the peertune peer holding the study."""

    def __init__(self, peer):
        self._peer = peer

    def suggest(self, trial, name, wire):
        return self._peer.request({"op": "suggest", "trial": trial._handle, "name": name, "distribution": wire})["value"]

    def report(self, trial, value, step):
        return self._peer.request({"op": "report", "trial": trial._handle, "value": value, "step": step})["prune"]

    def should_prune(self, trial):
        return self._peer.request({"op": "should_prune", "trial": trial._handle})["prune"]

    def set_user_attr(self, trial, key, value):
        self._peer.request({"op": "set_trial_user_attr", "trial": trial._handle, "key": key, "value": value})

    def checkpoint(self, trial, msg):
        return self._peer.request(dict(msg, trial=trial._handle))


# ---------------------------------------------------------------------------------------------
# Studies.

def _states(states):
    return None if states is None else [TrialState(s).name for s in states]


class Study(object):
    """A study held by a peertune peer (in memory or a replica shared with other peers)."""

    def __init__(self, peer, answer, storage_handle):
        self._peer = peer
        self._handle = answer["study"]
        self._storage = storage_handle
        self.study_name = answer["study_name"]
        self._study_id = answer["study_id"]
        self._directions = [StudyDirection[d.upper()] for d in answer["directions"]]
        self._backend = _StudyBackend(peer)
        self._stop = False

    @property
    def study_id(self):
        """The study's id: unique, where names may be shared (``load_study(study_id=...)``)."""
        return self._study_id

    @property
    def direction(self):
        if len(self._directions) > 1:
            raise RuntimeError("This attribute is not available during multi-objective optimization.")
        return self._directions[0]

    @property
    def directions(self):
        return list(self._directions)

    @property
    def _is_multi(self):
        return len(self._directions) > 1

    @property
    def trials(self):
        return self.get_trials()

    def get_trials(self, deepcopy=True, states=None):
        a = self._peer.request({"op": "trials", "study": self._handle, "states": _states(states)})
        return [FrozenTrial._from_json(t) for t in a["trials"]]

    @property
    def best_trial(self):
        if self._is_multi:
            raise RuntimeError("A single best trial cannot be retrieved from a multi-objective study. Consider using Study.best_trials to retrieve a list containing the best trials.")
        try:
            return FrozenTrial._from_json(self._peer.request({"op": "best_trial", "study": self._handle})["trial"])
        except ValueError as e:
            raise ValueError("No trials are completed yet. (%s)" % e)

    @property
    def best_value(self):
        return self.best_trial.value

    @property
    def best_params(self):
        return self.best_trial.params

    @property
    def best_trials(self):
        return [FrozenTrial._from_json(t) for t in self._peer.request({"op": "best_trials", "study": self._handle})["trials"]]

    @property
    def user_attrs(self):
        return self._peer.request({"op": "study_info", "study": self._handle})["user_attrs"]

    @property
    def system_attrs(self):
        return self._peer.request({"op": "study_info", "study": self._handle})["system_attrs"]

    def set_user_attr(self, key, value):
        self._peer.request({"op": "set_study_user_attr", "study": self._handle, "key": key, "value": value})

    def enqueue_trial(self, params, user_attrs=None, skip_if_exists=False):
        self._peer.request({"op": "enqueue_trial", "study": self._handle, "params": params,
                            "user_attrs": user_attrs, "skip_if_exists": bool(skip_if_exists)})

    def ask(self, fixed_distributions=None):
        fixed = {k: d._wire() for k, d in (fixed_distributions or {}).items()}
        a = self._peer.request({"op": "ask", "study": self._handle, "fixed_distributions": fixed})
        t = Trial(self._backend, a["number"], a["trial_id"], study=self, datetime_start=_parse_time(a.get("datetime_start")))
        t._handle = a["trial"]
        for name, d in (fixed_distributions or {}).items():
            t._params[name] = a["params"].get(name)
            t._distributions[name] = d
        return t

    def tell(self, trial, values=None, state=None, skip_if_finished=False):
        msg = {"op": "tell", "study": self._handle, "skip_if_finished": bool(skip_if_finished)}
        if isinstance(trial, Trial):
            msg["trial"] = trial._handle
        else:
            msg["number"] = int(trial)
        if values is not None:
            msg["values"] = [_to_wire(float(v)) for v in values] if isinstance(values, (list, tuple)) else _to_wire(float(values))
        if state is not None:
            msg["state"] = TrialState(state).name
        return FrozenTrial._from_json(self._peer.request(msg)["trial"])

    def _tell_fail(self, trial, reason):
        return FrozenTrial._from_json(self._peer.request({"op": "tell", "study": self._handle, "trial": trial._handle,
                                                          "state": "FAIL", "fail_reason": reason})["trial"])

    def stop(self):
        """Stops optimize() after the trials in flight."""
        self._stop = True

    def _ask_admitted(self):
        """ask(), unless the study's pruner schedules trials (PBT with population_size): then None when
        the study is done, after waiting while it says wait."""
        while True:
            a = self._peer.request({"op": "ask", "study": self._handle, "fixed_distributions": {}, "admit": True})
            if a.get("turn") == "done":
                return None
            if a.get("turn") == "wait":
                if self._stop:
                    return None
                time.sleep(0.2)
                continue
            t = Trial(self._backend, a["number"], a["trial_id"], study=self, datetime_start=_parse_time(a.get("datetime_start")))
            t._handle = a["trial"]
            return t

    def _run_one(self, func, catch, trial=None):
        trial = trial if trial is not None else self.ask()
        try:
            value = func(trial)
        except TrialPruned:
            return self.tell(trial, state=TrialState.PRUNED), None
        except BaseException as e:  # noqa: B902 -- Optuna fails the trial on any exception, then re-raises
            frozen = self._tell_fail(trial, "the objective raised %s: %s" % (type(e).__name__, e))
            if isinstance(e, Exception) and catch and isinstance(e, catch):
                return frozen, None
            return frozen, e
        if value is None:
            return self._tell_fail(trial, "the objective returned None; return a number (or one per direction)"), None
        try:
            if isinstance(value, (list, tuple)):
                values = [float(v) for v in value]
            else:
                values = float(value)
        except (TypeError, ValueError):
            return self._tell_fail(trial, "the objective returned %r, which is not a number" % (value,)), None
        return self.tell(trial, values), None

    def optimize(self, func, n_trials=None, timeout=None, n_jobs=1, catch=(), callbacks=None,
                 gc_after_trial=False, show_progress_bar=False):
        """Optuna's optimize: runs func(trial) n_trials times (or until timeout), n_jobs at once in threads."""
        if isinstance(catch, type):
            catch = (catch,)
        catch = tuple(catch or ())
        callbacks = list(callbacks or [])
        if n_jobs == -1:
            n_jobs = os.cpu_count() or 1
        deadline = time.time() + timeout if timeout is not None else None
        self._stop = False
        lock = threading.Lock()
        state = {"started": 0, "error": None}

        def loop():
            while True:
                with lock:
                    if self._stop or state["error"] is not None:
                        return
                    if n_trials is not None and state["started"] >= n_trials:
                        return
                    if deadline is not None and time.time() >= deadline:
                        return
                    state["started"] += 1
                trial = self._ask_admitted()
                if trial is None:
                    return
                frozen, err = self._run_one(func, catch, trial)
                if err is not None:
                    with lock:
                        if state["error"] is None:
                            state["error"] = err
                    return
                for cb in callbacks:
                    cb(self, frozen)
                if gc_after_trial:
                    import gc
                    gc.collect()

        if n_jobs <= 1:
            loop()
        else:
            threads = [threading.Thread(target=loop, daemon=True) for _ in range(n_jobs)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if state["error"] is not None:
            raise state["error"]

    def trials_dataframe(self, attrs=("number", "value", "datetime_start", "datetime_complete", "duration", "params",
                                       "user_attrs", "system_attrs", "state"), multi_index=False):
        """Optuna's trials_dataframe (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("trials_dataframe() needs pandas (pip install pandas, or apt install python3-pandas); "
                              "study.trials gives the same data without it")
        rows = []
        for t in self.trials:
            row = {}
            for a in attrs:
                if a == "number":
                    row["number"] = t.number
                elif a == "value":
                    if self._is_multi:
                        for i in range(len(self._directions)):
                            row["values_%d" % i] = t.values[i] if t.values else None
                    else:
                        row["value"] = t.values[0] if t.values else None
                elif a in ("datetime_start", "datetime_complete", "duration"):
                    row[a] = getattr(t, a)
                elif a == "state":
                    row["state"] = t.state.name
                elif a in ("params", "user_attrs", "system_attrs"):
                    for k, v in sorted(getattr(t, a).items()):
                        row["%s_%s" % (a, k)] = v
            rows.append(row)
        return pd.DataFrame(rows)


def create_study(storage=None, sampler=None, pruner=None, study_name=None, direction=None, load_if_exists=False,
                 *, directions=None, study_id=None):
    """Optuna's create_study. storage None: in memory; "peer:<data dir>?join=..." or PeerStorage: a swarm.

    ``study_id`` (with ``load_if_exists=True``): the study to load when several share ``study_name``
    (AmbiguousStudyError lists their ids)."""
    if direction is not None and directions is not None:
        raise ValueError("Specify only one of `direction` and `directions`.")
    dirs = [_direction(d) for d in (directions if directions is not None else [direction or "minimize"])]
    peer = _get_peer()
    handle = _storage_handle(storage)
    msg = {"op": "create_study", "storage": handle, "study_name": study_name, "directions": dirs,
           "load_if_exists": bool(load_if_exists)}
    if study_id is not None:
        msg["study_id"] = study_id
    if sampler is not None:
        msg["sampler"] = sampler._spec()
    if pruner is not None:
        msg["pruner"] = pruner._spec()
    return Study(peer, peer.request(msg), handle)


def load_study(study_name=None, storage=None, sampler=None, pruner=None, *, study_id=None):
    """Optuna's load_study; with a joining PeerStorage it waits (up to 60 s) for the study to arrive.

    ``study_id`` chooses the study by id (``study_name`` may then be omitted): a replica may hold several
    studies of one name, and loading by that name raises AmbiguousStudyError listing their ids."""
    if storage is None:
        raise ValueError("load_study needs a storage: a study in memory exists only in the process that created it")
    peer = _get_peer()
    handle = _storage_handle(storage)
    msg = {"op": "load_study", "storage": handle, "study_name": study_name}
    if study_id is not None:
        msg["study_id"] = study_id
    if sampler is not None:
        msg["sampler"] = sampler._spec()
    if pruner is not None:
        msg["pruner"] = pruner._spec()
    return Study(peer, peer.request(msg), handle)


def delete_study(study_name=None, storage=None, *, study_id=None):
    """Deletes the study from this peer's replica (other peers keep theirs); ``study_id`` picks one of several of a name."""
    msg = {"op": "delete_study", "storage": _storage_handle(storage), "study_name": study_name}
    if study_id is not None:
        msg["study_id"] = study_id
    _get_peer().request(msg)


def get_all_study_names(storage):
    return _get_peer().request({"op": "study_names", "storage": _storage_handle(storage)})["study_names"]


class MaxTrialsCallback(object):
    """Stops the study once it has n_trials trials in the given states (Optuna's MaxTrialsCallback)."""

    def __init__(self, n_trials, states=(TrialState.COMPLETE,)):
        self._n = n_trials
        self._states = states

    def __call__(self, study, trial):
        if len(study.get_trials(states=self._states)) >= self._n:
            study.stop()


trial = _submodule("trial", Trial=Trial, FrozenTrial=FrozenTrial, TrialState=TrialState)
study = _submodule("study", Study=Study, StudyDirection=StudyDirection, MaxTrialsCallback=MaxTrialsCallback,
                              create_study=create_study, load_study=load_study, delete_study=delete_study)


# ---------------------------------------------------------------------------------------------
# Command objectives: this script run by a peertune worker.

class _Channel(object):
    """The protocol stream: the original stdout for requests, stdin for answers."""

    def __init__(self):
        if os.environ.get("PEERTUNE_PROTOCOL") is None:
            raise RuntimeError(
                "peertune_client: this script was not started by a peertune worker "
                "(PEERTUNE_PROTOCOL is not set); run it as: "
                "peertune worker --study-name NAME -- python3 " + (sys.argv[0] or "script.py"))
        self.protocol = min(PROTOCOL_VERSION, int(os.environ.get("PEERTUNE_PROTOCOL", "1") or "1"))
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
            # The worker is gone: nobody will take this trial's result.
            os._exit(3)
        if isinstance(line, bytes):
            line = line.decode("utf-8")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise ValueError(answer.get("error", "the worker refused the request"))
        return answer


class _WorkerBackend(object):
    """Trial requests answered by the peertune worker that started this script."""

    def __init__(self, channel):
        self._ch = channel

    def suggest(self, trial, name, wire):
        return self._ch.request({"op": "suggest", "name": name, "distribution": wire})["value"]

    def report(self, trial, value, step):
        return self._ch.request({"op": "report", "value": value, "step": step})["prune"]

    def should_prune(self, trial):
        return self._ch.request({"op": "should_prune"})["prune"]

    def set_user_attr(self, trial, key, value):
        self._ch.request({"op": "set_user_attr", "key": key, "value": value})

    def checkpoint(self, trial, msg):
        return self._ch.request(msg)

    def send(self, msg):
        self._ch.request(msg)


_channel = None
_trial = None


def _get_channel():
    global _channel
    if _channel is None:
        _channel = _Channel()
    return _channel


def get_trial():
    """The trial of this process, under a version-1 worker (one trial per process)."""
    global _trial
    if _trial is None:
        _trial = Trial(_WorkerBackend(_get_channel()), int(os.environ.get("PEERTUNE_TRIAL_NUMBER", "-1")),
                       os.environ.get("PEERTUNE_TRIAL_ID", ""))
    return _trial


def _run_one(objective, trial):
    try:
        result = objective(trial)
    except TrialPruned:
        trial.prune()
        return None
    if result is None:
        raise ValueError("peertune_client.run: the objective returned None; return a number (or a list of numbers)")
    trial.finish(result)
    return result


def run(objective):
    """Runs objective(trial) for the worker's trials and sends each result.

    Under a version-2 worker this loops over the trials of this job slot until the worker says stop
    (an exception fails that trial: its traceback goes to stderr and the loop goes on). Under a
    version-1 worker it runs one trial; an exception propagates (the process exits non-zero and the
    trial fails). Returns the last result."""
    ch = _get_channel()
    if ch.protocol < 2:
        return _run_one(objective, get_trial())
    ch.request({"op": "hello", "protocol": 2})
    backend = _WorkerBackend(ch)
    last = None
    while True:
        answer = ch.request({"op": "next"})
        if answer.get("stop"):
            return last
        t = answer["trial"]
        trial = Trial(backend, t["number"], t["trial_id"])
        trial.study_name = t.get("study_name", "")
        try:
            last = _run_one(objective, trial)
        except Exception as e:  # one trial fails; this process goes on with the next
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            trial.fail("%s: %s" % (type(e).__name__, e))
