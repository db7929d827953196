"""The fairest plain-PyTorch FedAvg round of the same model, to set beside the engine.

    pip install torch==2.13.0   # not a dependency of fedgan_jax; any environment with torch
    python experiments/torch_baseline.py --clients=5,20,100 --threads=2
    python experiments/torch_baseline.py --device=cuda --variants=eager,compile

Table II MNIST CNN, clients one after another, each one local epoch of SGD (lr 0.05) over
``--records`` records in batches of 64 from the global model, then the FedAvg mean: the
same shapes, steps and clients as the engine's rows of `experiments/benchmark.py`. The
fairest form of it: one local model and one optimiser built once, the global state loaded
into the local model per client (no per-client construction), the per-client results
accumulated into a running sum (no stack of N copies). Variants:

* ``eager``: contiguous NCHW tensors (PyTorch's default layout);
* ``channels_last``: NHWC memory format for the model and the inputs;
* ``compile``: ``torch.compile`` of the training step (default inductor backend).

Prints one JSON line per (variant, clients): samples per second, median over
``--repeats`` rounds after ``--warmup`` rounds. `experiments/benchmark.py` runs this file
in a subprocess when torch is importable and keeps the fastest variant as ``pytorch``.
"""

import argparse
import json
import statistics
import time

VARIANTS = ("eager", "channels_last", "compile")


def _parse_args(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="5", help="comma-separated client counts")
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    args.variants = args.variants.split(",")
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    return args


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


class _Round:
    """One FedAvg round with a local model and optimiser built once."""

    def __init__(self, args, variant):
        import torch

        self.args, self.torch = args, torch
        fmt = torch.channels_last if variant == "channels_last" else torch.contiguous_format
        self.fmt = fmt
        self.global_model = _model().to(args.device, memory_format=fmt)
        self.local = _model().to(args.device, memory_format=fmt)
        self.opt = torch.optim.SGD(self.local.parameters(), lr=0.05)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(xb, yb):
            self.opt.zero_grad(set_to_none=True)
            loss = loss_fn(self.local(xb), yb)
            loss.backward()
            self.opt.step()
            return loss

        self.step = torch.compile(step) if variant == "compile" else step

    def __call__(self, x, y):
        torch, a = self.torch, self.args
        total = {k: torch.zeros_like(v) for k, v in self.global_model.state_dict().items()}
        start = self.global_model.state_dict()
        for c in range(x.shape[0]):
            self.local.load_state_dict(start)
            perm = torch.randperm(a.records, device=a.device)
            for s in range(0, a.records, a.batch_size):
                idx = perm[s : s + a.batch_size]
                self.step(x[c, idx].contiguous(memory_format=self.fmt), y[c, idx])
            with torch.no_grad():
                for k, v in self.local.state_dict().items():
                    total[k] += v
        self.global_model.load_state_dict({k: v / x.shape[0] for k, v in total.items()})

    def sync(self):
        if self.args.device.startswith("cuda"):
            self.torch.cuda.synchronize()


def measure(args, variant, clients):
    """Samples per second of one variant at one client count (a JSON-able record)."""
    import torch

    torch.manual_seed(0)
    x = torch.randn(clients, args.records, 1, 28, 28, device=args.device)
    y = torch.randint(0, 10, (clients, args.records), device=args.device)
    fl_round = _Round(args, variant)
    tic = time.perf_counter()
    for _ in range(args.warmup):  # compiles (compile variant) and warms the allocator
        fl_round(x, y)
    fl_round.sync()
    warmup = time.perf_counter() - tic
    times = []
    for _ in range(args.repeats):
        tic = time.perf_counter()
        fl_round(x, y)
        fl_round.sync()
        times.append(time.perf_counter() - tic)
    return {
        "mode": f"pytorch_{variant}",
        "clients": clients,
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "samples_per_second": clients * args.records / statistics.median(times),
        "warmup_seconds": warmup,
    }


def main(argv=None):
    args = _parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    for clients in args.clients:
        for variant in args.variants:
            try:
                record = measure(args, variant, clients)
            except Exception as e:  # e.g. torch.compile without a C compiler: say so, go on
                record = {"mode": f"pytorch_{variant}", "clients": clients, "error": repr(e)}
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
