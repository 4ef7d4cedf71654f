"""Training throughput and MFU of a ~300M-parameter llama on one GPU: the plain path vs FSDP2 at world size 1.

Both paths train the same model (24 × 1024, head_dim 64, vocab 32,000: about 302M non-embedding parameters) with the
project's own step function (`models.train.train_step`), bf16 autocast with fp32 master weights, on a fixed random
batch. MFU = achieved model FLOP/s ÷ the GPU's bf16 dense peak, with model FLOPs per token from
`sweeps.accounting.flops_per_token` (6·(N_non_embedding + LM head) + attention) — the embedding lookup is free and
the LM head's 6·d·V per token is counted, since at this size it is 10% of the work. Prints the two paths side by side.
"""

from __future__ import annotations

import os
import socket
import time

import torch

from models.accounting import count_params
from models.init import apply_init
from models.lm import build_lm, use_bf16_autocast
from models.train import train_step
from sweeps.accounting import ModelShape, flops_per_token

SHAPE = ModelShape("llama", n_layer=24, d_model=1024, head_dim=64, seq_len=1024)
VOCAB = 32_000
BATCH, WARMUP, STEPS = 8, 3, 10

# bf16 dense tensor-core peaks (FLOP/s) from the vendors' data sheets, by a substring of the device name
PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12, "V100": 125e12}


def peak_flops(name: str) -> float | None:
    return next((peak for key, peak in PEAKS.items() if key in name), None)


def measure(model: torch.nn.Module, device: torch.device) -> float:
    """Training tokens per second over STEPS steps after WARMUP."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    batch = torch.randint(0, VOCAB, (BATCH, SHAPE.seq_len), device=device)
    for i in range(WARMUP + STEPS):
        if i == WARMUP:
            torch.cuda.synchronize()
            started = time.perf_counter()
        train_step(model, optimizer, batch, 1e-4, 1.0)
    torch.cuda.synchronize()
    return BATCH * SHAPE.seq_len * STEPS / (time.perf_counter() - started)


def fresh_model(device: torch.device) -> torch.nn.Module:
    model = build_lm(SHAPE, VOCAB)
    apply_init(model, d_model=SHAPE.d_model, rate=0.5, std=None, seed=0)
    return model.to(device)


def main() -> None:
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    model = fresh_model(device)
    counts = count_params(model)
    per_token = flops_per_token(counts, n_layer=SHAPE.n_layer, seq_len=SHAPE.seq_len, d_model=SHAPE.d_model)
    peak = peak_flops(name)
    print(
        f"{name}: llama {SHAPE.n_layer}x{SHAPE.d_model}, {counts.non_embedding / 1e6:.0f}M non-embedding "
        f"({counts.total / 1e6:.0f}M total) parameters, batch {BATCH}x{SHAPE.seq_len}, bf16 autocast"
    )

    use_bf16_autocast(model, "cuda")
    results = {"plain": measure(model, device)}
    del model
    torch.cuda.empty_cache()

    from models.distributed import setup_process_group, shard_model, strategy_of, teardown_process_group

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    ctx = setup_process_group(device)
    sharded = shard_model(
        fresh_model(torch.device("cpu")), device=ctx.device, mixed_precision=True, min_params_for_fsdp=0
    )
    assert strategy_of(sharded) == "fsdp"
    results["fsdp (world size 1)"] = measure(sharded, device)
    teardown_process_group()

    for path, tokens_per_s in results.items():
        mfu = f"{tokens_per_s * per_token / peak:.1%}" if peak else "n/a (unknown peak for this GPU)"
        print(f"{path:>20}: {tokens_per_s:>10,.0f} tokens/s   MFU {mfu}")
    print(f"fsdp / plain throughput: {results['fsdp (world size 1)'] / results['plain']:.3f}")


if __name__ == "__main__":
    main()
