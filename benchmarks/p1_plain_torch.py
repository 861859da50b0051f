"""P1's plain PyTorch baseline (issue #19): federated averaging written the
way a user would write it in PyTorch -- an ``nn.Sequential`` model, each
client's data in a ``DataLoader`` (batch 32, shuffled), ``torch.optim.SGD``,
and FedAvg by hand over the ``state_dict``s.

The same workload as ``p1_plain_tf.py`` (whose docstring describes it), from
the same files, with the same scaling and test slice (``--standardize``:
``(x - 0.1307) / 0.3081``).  PyTorch is not a fedarena dependency: run this
with an interpreter that has ``torch`` and ``numpy``, e.g. a separate venv
(``python3 -m venv /work/torchvenv && /work/torchvenv/bin/pip install torch
numpy``); ``p1.py`` takes it from ``--torch-python`` or
``FEDARENA_TORCH_PYTHON``.

Prints one JSON line, as ``p1_plain_tf.py`` does.  Imports nothing of
fedarena or TensorFlow.

    /work/torchvenv/bin/python benchmarks/p1_plain_torch.py [--data DIR] [--rounds 30] [--standardize]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from p1_plain_tf import DATA, STARTED, load_p1, peak_rss_mib  # the same files, slice and clock (no TF import)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with MNIST's t10k IDX files")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--standardize", action="store_true", help="(x - 0.1307) / 0.3081 after / 255")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(args.seed)
    train_x, train_y, test_x, test_y = load_p1(args.data, args.standardize)
    rng = np.random.default_rng(args.seed)
    clients = np.array_split(rng.permutation(len(train_y)), args.clients)  # IID
    loaders = [DataLoader(TensorDataset(torch.from_numpy(train_x[c]), torch.from_numpy(train_y[c]).long()),
                          batch_size=32, shuffle=True) for c in clients]
    test_x_t, test_y_t = torch.from_numpy(test_x), torch.from_numpy(test_y).long()

    model = nn.Sequential(nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 10))
    loss_fn = nn.CrossEntropyLoss()
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    round_s, accuracies, first_round_end = [], [], None
    for _ in range(args.rounds):
        began = time.perf_counter()
        chosen = rng.choice(args.clients, args.per_round, replace=False)
        states, sizes = [], []
        for c in chosen:
            model.load_state_dict(global_state)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
            model.train()
            for x, y in loaders[c]:
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            sizes.append(len(clients[c]))
        total = float(sum(sizes))
        global_state = {k: sum(s[k] * (n / total) for s, n in zip(states, sizes)) for k in global_state}
        model.load_state_dict(global_state)
        model.eval()
        with torch.no_grad():
            accuracies.append(float((model(test_x_t).argmax(dim=1) == test_y_t).float().mean()))
        round_s.append(time.perf_counter() - began)
        if first_round_end is None:
            first_round_end = time.time() - STARTED
    print(json.dumps(dict(
        script="plain_torch", torch=torch.__version__, threads=torch.get_num_threads(), standardize=args.standardize,
        rounds=args.rounds, round_s=round_s, first_round_from_start_s=first_round_end,
        whole_run_from_start_s=time.time() - STARTED, peak_rss_mib=peak_rss_mib(), accuracy=accuracies[-1],
        accuracies=accuracies,
    )), flush=True)


if __name__ == "__main__":
    main()
