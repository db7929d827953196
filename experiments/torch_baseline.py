"""The straightforward alternative: a plain PyTorch CPU FedAvg round of the same model.

    pip install torch==2.13.0   # not a dependency of fedgan_jax; any environment with torch
    python experiments/torch_baseline.py --clients=5 --threads=2

Table II MNIST CNN, clients one after another, each one local epoch of SGD over
``--records`` records in batches of 64, then the FedAvg mean. Prints samples per second
(median over ``--repeats`` rounds after a warm-up round) as JSON, to set beside
`experiments/benchmark.py`.
"""

import argparse
import json
import statistics
import time


def _parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args()


def _model():
    """The Table II MNIST CNN."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(512, 1000),
        nn.ReLU(),
        nn.Linear(1000, 10),
    )


def _fedavg_round(args, global_model, x, y, loss_fn):
    """Each client one local epoch of SGD from the global model, then their mean into it."""
    import torch

    states = []
    for c in range(args.clients):
        local = _model()
        local.load_state_dict(global_model.state_dict())
        opt = torch.optim.SGD(local.parameters(), lr=0.05)
        perm = torch.randperm(args.records)
        for s in range(0, args.records, args.batch_size):
            idx = perm[s : s + args.batch_size]
            opt.zero_grad()
            loss_fn(local(x[c, idx]), y[c, idx]).backward()
            opt.step()
        states.append(local.state_dict())
    global_model.load_state_dict(
        {k: torch.stack([s[k] for s in states]).mean(0) for k in states[0]}
    )


def main():
    args = _parse_args()

    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    global_model = _model()
    x = torch.randn(args.clients, args.records, 1, 28, 28)
    y = torch.randint(0, 10, (args.clients, args.records))
    loss_fn = nn.CrossEntropyLoss()

    _fedavg_round(args, global_model, x, y, loss_fn)  # warm-up
    times = []
    for _ in range(args.repeats):
        tic = time.perf_counter()
        _fedavg_round(args, global_model, x, y, loss_fn)
        times.append(time.perf_counter() - tic)
    samples = args.clients * args.records
    print(
        json.dumps(
            {
                "mode": "pytorch_loop",
                "clients": args.clients,
                "threads": args.threads,
                "torch": torch.__version__,
                "samples_per_second": samples / statistics.median(times),
            }
        )
    )


if __name__ == "__main__":
    main()
