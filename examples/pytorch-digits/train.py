"""Tune a PyTorch MLP on scikit-learn's digits with peertune, pruning by epoch.

This is an Optuna script with one line changed (`import peertune_client as optuna`), and it runs
three ways:

    # 1. the study in this Python process, Optuna's API (the peer runs as a child process)
    python3 examples/pytorch-digits/train.py --epochs 10 --n-trials 20

    # 2. the same study shared by machines: give a peer storage (join= another peer's address)
    python3 examples/pytorch-digits/train.py --storage "peer:./peer-a" --study-name digits

    # 3. as a peertune worker's command objective: one Python process per job slot runs trial after
    #    trial (torch is imported once), and the worker's --devices hands out GPUs
    peertune worker --study-name digits --data-dir ./peer-a -- python3 examples/pytorch-digits/train.py --epochs 10
"""
import argparse
import os
import sys
import tempfile

import torch
import torch.nn as nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

# The client is one file with no dependencies; copy it next to your script or put python/ on the path.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import peertune_client as optuna  # noqa: E402  (was: import optuna)

_DATA = None


def load_data():
    """The digits split, loaded once per process (a persistent worker process reuses it)."""
    global _DATA
    if _DATA is None:
        digits = load_digits()
        x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
        y = torch.tensor(digits.target, dtype=torch.long)
        _DATA = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return _DATA


def build_model(trial):
    n_layers = trial.suggest_int("n_layers", 1, 3)
    layers = []
    width_in = 64
    for i in range(n_layers):
        width = trial.suggest_int("units_l{}".format(i), 16, 256, log=True)
        layers += [nn.Linear(width_in, width), nn.ReLU(), nn.Dropout(trial.suggest_float("dropout_l{}".format(i), 0.0, 0.5))]
        width_in = width
    layers.append(nn.Linear(width_in, 10))
    return nn.Sequential(*layers)


def objective(trial, epochs):
    torch.manual_seed(trial.number)
    x_tr, x_va, y_tr, y_va = load_data()
    model = build_model(trial)
    optimizer_name = trial.suggest_categorical("optimizer", ["Adam", "SGD"])
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    batch_size = trial.suggest_categorical("batch_size", [32, 64, 128])
    optimizer = getattr(torch.optim, optimizer_name)(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()

    # Resume: a retry of a trial whose machine died starts from the last epoch it checkpointed (the
    # checkpoint is fetched from whichever peer holds a copy).
    first_epoch = 0
    checkpoint = trial.get_checkpoint()
    if checkpoint is not None:
        state = torch.load(checkpoint["path"])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first_epoch = state["epoch"] + 1
        print("trial {} resumes at epoch {} from trial {}'s checkpoint".format(trial.number, first_epoch, checkpoint["trial_id"]), file=sys.stderr)
    workdir = tempfile.mkdtemp(prefix="digits-")

    accuracy = 0.0
    for epoch in range(first_epoch, epochs):
        model.train()
        perm = torch.randperm(len(x_tr))
        for start in range(0, len(x_tr), batch_size):
            idx = perm[start:start + batch_size]
            optimizer.zero_grad()
            loss_fn(model(x_tr[idx]), y_tr[idx]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_va).argmax(dim=1) == y_va).float().mean().item()
        print("trial {} epoch {}: validation accuracy {:.4f}".format(trial.number, epoch, accuracy), file=sys.stderr)

        # Model and optimizer state each epoch; the peer keeps a copy (and another peer a replica).
        path = os.path.join(workdir, "state.pt")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, path)
        trial.save_checkpoint(path, step=epoch, metrics={"accuracy": accuracy})

        # Pruning by epoch: the study's pruner sees every peer's reports.
        trial.report(accuracy, epoch)
        if trial.should_prune():
            raise optuna.exceptions.TrialPruned()

    trial.set_user_attr("epochs", epochs)
    return accuracy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n-trials", type=int, default=20)
    parser.add_argument("--storage", default=None, help='None: in memory; "peer:<data dir>?join=<multiaddr>": a swarm')
    parser.add_argument("--study-name", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial (1 leaves cores for other trials)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if os.environ.get("PEERTUNE_PROTOCOL"):
        # Started by a peertune worker: run the trials it hands this process.
        optuna.run(lambda trial: objective(trial, args.epochs))
        return
    study = optuna.create_study(direction="maximize", storage=args.storage, study_name=args.study_name,
                                load_if_exists=args.study_name is not None, pruner=optuna.pruners.MedianPruner())
    study.optimize(lambda trial: objective(trial, args.epochs), n_trials=args.n_trials)
    pruned = study.get_trials(states=[optuna.trial.TrialState.PRUNED])
    print("Number of finished trials: {} ({} pruned)".format(len(study.trials), len(pruned)))
    print("Best trial: {} with accuracy {:.4f} and params {}".format(study.best_trial.number, study.best_value, study.best_params))


if __name__ == "__main__":
    main()
