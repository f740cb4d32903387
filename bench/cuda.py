#!/usr/bin/env python3
"""PyTorch baseline for bench/cuda.mjs (issue #7).

MLPs 32 -> W x 4 (ReLU) -> 16, W = 64 and 128, batches 2^14, 2^18, 2^21, on one CUDA device:
  eager-fp32       plain eager PyTorch in float32 (TF32 matmuls left at PyTorch's default, off)
  eager-autocast   eager with torch.autocast(float16) (+ GradScaler when training)
  compile-autocast torch.compile(model) under the same autocast
Training: steps/s of forward + MSE + backward + Adam step. Inference: samples/s under no_grad.
Inputs and targets stay on the device (no host copies in the timed loop, unlike mlpkit's
host-array API in bench/cuda.mjs) and the loss is not read back each step.

Writes cuda-torch.json and cuda-torch.md to --out. Without torch or a CUDA device it writes
why and exits 0. torch.compile compiles per module and shape family, which takes tens of
seconds: --budget bounds the whole run (remaining cells are reported as skipped).
NOT YET RUN ON A GPU.

  python3 bench/cuda.py [--seconds S] [--out DIR] [--batches 14,18,21] [--budget 240] [--no-compile]
"""

import argparse
import json
import os
import sys
import time

INPUTS = 32
OUTPUTS = 16
WIDTHS = [64, 128]


def write(out, result, markdown):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "cuda-torch.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "cuda-torch.md"), "w") as f:
        f.write(markdown)
    print(markdown)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0, help="time budget per timed cell")
    ap.add_argument("--out", default="out/bench-cuda")
    ap.add_argument("--batches", default="14,18,21", help="log2 of the batch sizes")
    ap.add_argument("--budget", type=float, default=240.0, help="seconds for the whole run")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = ap.parse_args()
    started = time.perf_counter()
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": []}

    try:
        import torch
    except ImportError as e:
        result["skipped"] = f"torch is not installed ({e})"
        write(args.out, result, f"PyTorch cuda bench skipped: {result['skipped']}\n")
        return 0
    result["torch"] = torch.__version__
    if not torch.cuda.is_available():
        result["skipped"] = "torch.cuda.is_available() is False"
        write(args.out, result, f"PyTorch cuda bench skipped: {result['skipped']}\n")
        return 0
    dev = torch.device("cuda")
    result["device"] = torch.cuda.get_device_name(0)
    result["cuda"] = torch.version.cuda
    result["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32

    def make(width):
        torch.manual_seed(1)
        layers, inputs = [], INPUTS
        for _ in range(4):
            layers += [torch.nn.Linear(inputs, width), torch.nn.ReLU()]
            inputs = width
        layers.append(torch.nn.Linear(inputs, OUTPUTS))
        return torch.nn.Sequential(*layers).to(dev)

    def timed(fn, seconds):
        """Calls per second of fn (synchronised around the loop): >= 5 calls and >= seconds."""
        fn()
        torch.cuda.synchronize()
        calls, t0 = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            if calls >= 5 and calls % 5 == 0:
                torch.cuda.synchronize()
                elapsed = time.perf_counter() - t0
                if elapsed >= seconds:
                    return calls / elapsed

    data = {}
    for lb in [int(b) for b in args.batches.split(",")]:
        rows = 2 ** lb
        g = torch.Generator(device=dev).manual_seed(lb)
        data[rows] = (
            torch.rand(rows, INPUTS, device=dev, generator=g) * 2 - 1,
            torch.rand(rows, OUTPUTS, device=dev, generator=g) * 2 - 1,
        )

    modes = ["eager-fp32", "eager-autocast"] + ([] if args.no_compile else ["compile-autocast"])
    for width in WIDTHS:
        for mode in modes:
            model = make(width)
            run = torch.compile(model) if mode.startswith("compile") else model
            use_amp = mode != "eager-fp32"
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            try:
                scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
            except (AttributeError, TypeError):  # torch < 2.3
                scaler = torch.cuda.amp.GradScaler(enabled=use_amp)
            loss_fn = torch.nn.MSELoss()

            for rows, (x, t) in data.items():
                row = {"width": width, "mode": mode, "batch": rows}
                if time.perf_counter() - started > args.budget:
                    row["skipped"] = "time budget"
                    result["rows"].append(row)
                    continue

                def infer():
                    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                        run(x)

                def step():
                    opt.zero_grad(set_to_none=True)
                    with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                        loss = loss_fn(run(x).float(), t)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()

                try:
                    t0 = time.perf_counter()
                    row["infer_samples_per_s"] = rows * timed(infer, args.seconds)
                    steps = timed(step, args.seconds)
                    row["train_steps_per_s"] = steps
                    row["train_samples_per_s"] = rows * steps
                    row["seconds"] = time.perf_counter() - t0
                except Exception as e:  # out of memory, a compile failure: report and go on
                    row["error"] = f"{type(e).__name__}: {e}"[:300]
                result["rows"].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
            del model, run, opt

    def rate(v):
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if v >= scale:
                return f"{v / scale:.3g}{suffix}"
        return f"{v:.3g}"

    lines = [
        f"PyTorch {result['torch']} (CUDA {result['cuda']}) on {result['device']}, {result['date']}",
        "",
        "MLP 32 -> W x 4 (ReLU) -> 16; Adam + MSE; tensors resident on the device.",
        "",
        "| width | mode | batch | train steps/s | train samples/s | inference samples/s |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if "skipped" in r or "error" in r:
            lines.append(f"| {r['width']} | {r['mode']} | {r['batch']} | {r.get('skipped') or r.get('error')} | | |")
        else:
            lines.append(
                f"| {r['width']} | {r['mode']} | {r['batch']} | {r['train_steps_per_s']:.3g} | "
                f"{rate(r['train_samples_per_s'])} | {rate(r['infer_samples_per_s'])} |"
            )
    write(args.out, result, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
