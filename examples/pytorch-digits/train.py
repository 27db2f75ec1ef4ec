"""Tune a PyTorch MLP on scikit-learn's digits with peertune, pruning by epoch.

The peertune worker runs this script once per trial (a command objective):

    peertune worker --study-name digits --data-dir ./peer-a -- python3 examples/pytorch-digits/train.py --epochs 20

Compared with the Optuna version of the same script, two lines change: the import, and
`peertune_client.run(objective)` in place of `study.optimize(objective)`.
"""
import argparse
import os
import sys

import torch
import torch.nn as nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

# The client is one file with no dependencies; copy it next to your script or put python/ on the path.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import peertune_client  # noqa: E402


def load_data():
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return x_tr, x_va, y_tr, y_va


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

    accuracy = 0.0
    for epoch in range(epochs):
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
        print("trial {} epoch {}: validation accuracy {:.4f}".format(trial.number, epoch, accuracy))

        # Pruning by epoch: the worker asks the study's pruner, which sees every peer's reports.
        trial.report(accuracy, epoch)
        if trial.should_prune():
            raise peertune_client.TrialPruned()

    trial.set_user_attr("epochs", epochs)
    return accuracy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial (1 leaves cores for other trials)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peertune_client.run(lambda trial: objective(trial, args.epochs))


if __name__ == "__main__":
    main()
