"""Cost of the curvature probes, measured side by side in one run on one model and one probe batch.

Model: the laptop study's ``2x64`` llama (2 layers, d_model 64, 2 heads of 32, seq_len 128, vocab 1024; built by
``models.lm.build_lm``, initialized by ``models.init.apply_init`` at rate 0.5), trained for 20 AdamW steps
(lr 3e-3, betas (0.9, 0.95), the laptop study's) on random-token batches so that Adam has state; the probe batch is
8 further random-token sequences. Random tokens, not the corpus, so the benchmark needs no data preparation. One torch
thread, as a laptop trial runs.

(a) **HVP time / gradient time** (target ≤ 2.5): one Hessian-vector product by double backward on the retained graph
    of g (``models.probes.hessian``) against one plain gradient (forward + backward) of the same loss. On CPU, torch's
    fused SDPA attention kernel has no double backward, so the probe's loss runs under ``sdpa_kernel(MATH)``; the
    gradient is timed under the same backend (the like-for-like ratio) and, for reference, with the default kernel.
    The one-off cost of building g with ``create_graph=True`` is printed separately, with the ratio amortized over a
    Lanczos run. Calls are interleaved and the median taken, because other work shares this machine.
(b) **HVPs for λ_max to 1e-3 relative accuracy**, on H and on Adam's preconditioned S = D^½HD^½ (the two operators of
    a probe), 3 start vectors each, against a reference λ_max from Lanczos at tol 1e-8:
    - ours: ``models.probes.lanczos.lanczos`` with tol 1e-3 (its residual test bounds the eigenvalue error by
      1e-3·|θ|); the Ritz value after every step is recovered from the recorded Krylov basis (T_j = Q_jᵀAQ_j, exact
      under full reorthogonalization), giving the first step within 1e-3 as well as where it stops. Once from the
      same random start as the power iteration, and once as the curvature probe runs it: the random start plus the
      gradient direction (g for H, D^½g for S; ``models/probes/lanczos.py``, start vector);
    - PyHessian's power iteration (``hessian.eigenvalues(maxIter=100, tol=1e-3)``: it stops when the estimate vᵀHv
      changes by < 1e-3 relative between iterations — a heuristic, not an accuracy guarantee — and reports the
      previous estimate). Its algorithm is re-implemented here line for line (random start per parameter from the
      global generator, normalization by ‖v‖ + 1e-6, estimate vᵀHv) and run for all 100 HVPs on both operators, so
      both its own stop and the first HVP within 1e-3 of λ_max are read off one sequence. The ``pyhessian`` package
      itself (``pip install --no-deps pyhessian``: a pure-Python wheel, it pulls no torch) runs on H from the same
      start when it is installed, its HVPs counted by wrapping the function it calls, as a check of the
      re-implementation.

Run: ``python benchmarks/curvature.py`` (a few minutes on 2 shared cores). No assertions.
"""

from __future__ import annotations

import importlib
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from models.init import apply_init
from models.lm import build_lm
from models.probes.adam import adam_preconditioner
from models.probes.curvature import precondition
from models.probes.hessian import flatten, hessian_operator, unflatten
from models.probes.lanczos import lanczos
from sweeps.grid import ModelShape

SHAPE = ModelShape("llama", n_layer=2, d_model=64, head_dim=32, seq_len=128)
VOCAB = 1024
PROBE_BATCH, TRAIN_STEPS, SEEDS, TARGET, MAX_ITER = 8, 20, range(3), 1e-3, 100
Matvec = Callable[[Tensor], Tensor]


def trained_model() -> tuple[torch.nn.Module, torch.optim.AdamW, Tensor]:
    model = build_lm(SHAPE, VOCAB)
    apply_init(model, d_model=SHAPE.d_model, rate=0.5, std=None, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = torch.randint(
        VOCAB, (TRAIN_STEPS + 1, PROBE_BATCH, SHAPE.seq_len), generator=torch.Generator().manual_seed(0)
    )
    for batch in tokens[:-1]:
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model.eval(), optimizer, tokens[-1]


def time_hvp_against_gradient(model: torch.nn.Module, batch: Tensor, rounds: int = 15) -> None:
    params = list(model.parameters())

    def loss_fn() -> Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return model(input_ids=batch, labels=batch).loss

    def gradient_default() -> None:
        torch.autograd.grad(model(input_ids=batch, labels=batch).loss, params)

    started = time.perf_counter()
    operator = hessian_operator(loss_fn, params)
    setup = time.perf_counter() - started
    v = unflatten(torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(1)), params)
    calls = {
        "hvp": lambda: operator.hvp(v),
        "gradient": lambda: torch.autograd.grad(loss_fn(), params),
        "gradient_default": gradient_default,
    }
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - started)
    hvp, grad, grad_default = (statistics.median(seconds[name]) for name in calls)
    print(f"(a) {sum(p.numel() for p in params):,} parameters, probe batch {PROBE_BATCH}×{SHAPE.seq_len} tokens")
    print(f"    gradient (math attention)      {grad * 1e3:8.1f} ms")
    print(f"    gradient (default SDPA kernel) {grad_default * 1e3:8.1f} ms")
    print(f"    HVP on the retained graph      {hvp * 1e3:8.1f} ms")
    print(f"    g with create_graph (once)     {setup * 1e3:8.1f} ms")
    print(
        f"    HVP / gradient = {hvp / grad:.2f}   (target <= 2.5)"
        f"; against the default kernel's gradient {hvp / grad_default:.2f}"
    )
    for k in (20, 50):
        print(
            f"    amortized over a {k}-HVP Lanczos run, (setup + {k}·HVP)/{k} / gradient = "
            f"{(setup + k * hvp) / k / grad:.2f}"
        )


def lanczos_trace(matvec: Matvec, n: int, seed: int, hint: Tensor | None = None) -> tuple[int, np.ndarray]:
    """HVPs our Lanczos takes at tol 1e-3 (from ``hint`` plus a random start when given), and its top Ritz value
    after each step (from the recorded basis)."""
    basis, images = [], []

    def recording(q: Tensor) -> Tensor:
        basis.append(q)
        images.append(matvec(q))
        return images[-1]

    result = lanczos(recording, n, tol=TARGET, seed=seed, dtype=torch.float32, hint=hint)
    q, aq = torch.stack(basis, 1).double(), torch.stack(images, 1).double()
    gram = q.T @ aq
    gram = (gram + gram.T) / 2
    ritz = [float(torch.linalg.eigvalsh(gram[:j, :j])[-1]) for j in range(1, len(basis) + 1)]
    return result.matvecs, np.array(ritz)


def power_trace(matvec: Matvec, start: Tensor, max_iter: int = MAX_ITER) -> np.ndarray:
    """PyHessian's power iteration (``hessian.eigenvalues``, top_n = 1) for all ``max_iter`` HVPs, without its stop:
    the estimate vᵀHv after every HVP. ``pyhessian_stop`` finds where PyHessian stops in this sequence."""
    v = start / (torch.linalg.vector_norm(start) + 1e-6)
    estimates: list[float] = []
    for _ in range(max_iter):
        v = v / (torch.linalg.vector_norm(v) + 1e-6)  # its orthnormal(v, []) at the top of every iteration
        hv = matvec(v)
        estimates.append(float(torch.dot(hv, v)))
        v = hv / (torch.linalg.vector_norm(hv) + 1e-6)
    return np.array(estimates)


def pyhessian_stop(estimates: np.ndarray, tol: float = TARGET) -> tuple[int, float]:
    """(HVPs, reported eigenvalue) of PyHessian: it stops at the first HVP whose estimate differs from the previous
    one by < tol relative and reports the previous one (it breaks before storing the new); else all, the last."""
    for i in range(1, len(estimates)):
        if abs(estimates[i - 1] - estimates[i]) / (abs(estimates[i - 1]) + 1e-6) < tol:
            return i + 1, float(estimates[i - 1])
    return len(estimates), float(estimates[-1])


def pyhessian_count(model: torch.nn.Module, batch: Tensor, seed: int) -> tuple[int, float] | None:
    """(HVPs, eigenvalue) of the pyhessian package's own power iteration on H, or None where it is not installed."""
    try:
        # pyhessian/__init__ rebinds the name ``hessian`` to the class; the module is what calls the HVP function.
        package = importlib.import_module("pyhessian.hessian")
    except ImportError:
        return None
    count = 0
    product = package.hessian_vector_product

    def counted(*args: object) -> object:
        nonlocal count
        count += 1
        return product(*args)

    def criterion(outputs: object, targets: Tensor) -> Tensor:
        logits = outputs.logits[:, :-1]  # type: ignore[attr-defined]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[:, 1:].reshape(-1))

    package.hessian_vector_product = counted
    try:
        model.zero_grad(set_to_none=True)
        with sdpa_kernel(SDPBackend.MATH), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # backward(create_graph=True) into .grad: PyHessian's way, warned about
            probe = package.hessian(model, criterion, data=(batch, batch), cuda=False)
        torch.manual_seed(seed)
        eigenvalues, _ = probe.eigenvalues(maxIter=100, tol=TARGET)
    finally:
        package.hessian_vector_product = product
        model.zero_grad(set_to_none=True)
    return count, float(eigenvalues[0])


def compare_solvers(model: torch.nn.Module, optimizer: torch.optim.AdamW, batch: Tensor) -> None:
    params = list(model.parameters())

    def loss_fn() -> Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return model(input_ids=batch, labels=batch).loss

    operator = hessian_operator(loss_fn, params)

    def hessian(v: Tensor) -> Tensor:
        return flatten(operator.hvp(unflatten(v, params)))

    d = flatten(adam_preconditioner(optimizer, params).diagonal)
    g = flatten(operator.gradient)
    # operator, and the start hint the curvature probe gives Lanczos on it (models/probes/curvature.py)
    operators = {"H": (hessian, g), "S = D^½HD^½": (precondition(hessian, d), d.sqrt() * g)}
    n = sum(p.numel() for p in params)
    print(f"(b) HVPs to reach λ_max within {TARGET:g} relative, {len(SEEDS)} start vectors per operator")
    for name, (matvec, hint) in operators.items():
        reference = lanczos(matvec, n, tol=1e-8, max_iter=300, seed=99, dtype=torch.float32)
        lam = float(reference.eigenvalues[0])
        print(f"  {name}: reference λ_max = {lam:.6g} ({reference.matvecs} HVPs, converged={reference.converged})")
        print(
            f"    {'seed':>4} | {'Lanczos: first ≤1e-3':>20} {'stops at':>8} {'rel err':>9} | "
            f"{'power: first ≤1e-3':>18} {'PyHessian stops at':>18} {'rel err':>9} | "
            f"{'probe: first ≤1e-3':>16} {'stops at':>8} {'rel err':>9}"
        )
        lanczos_stops, power_stops, lanczos_first, power_first, hinted_first, traces = [], [], [], [], [], []
        for seed in SEEDS:
            stop, ritz = lanczos_trace(matvec, n, seed)
            hinted_stop, hinted_ritz = lanczos_trace(matvec, n, seed, hint)
            hinted_first.append(_first_within(hinted_ritz, lam))
            estimates = power_trace(matvec, _pyhessian_start(params, seed))
            traces.append(estimates)
            power_stop, reported = pyhessian_stop(estimates)
            lanczos_stops.append(stop)
            power_stops.append(power_stop)
            lanczos_first.append(_first_within(ritz, lam))
            power_first.append(_first_within(estimates, lam))
            print(
                f"    {seed:>4} | {_n(lanczos_first[-1]):>20} {stop:>8} {_error(ritz[-1], lam):>9.1e} | "
                f"{_n(power_first[-1]):>18} {power_stop:>18} {_error(reported, lam):>9.1e} | "
                f"{_n(hinted_first[-1]):>16} {hinted_stop:>8} {_error(hinted_ritz[-1], lam):>9.1e}"
            )
        ratio = statistics.median(lanczos_stops) / statistics.median(power_stops)
        print(
            f"    median HVPs at each method's own stop: Lanczos {statistics.median(lanczos_stops):g}, "
            f"PyHessian {statistics.median(power_stops):g}, ratio {ratio:.2f} (see rel err: only Lanczos's stop "
            "guarantees 1e-3)"
        )
        # A power run never within 1e-3 counts as MAX_ITER + 1 HVPs, which makes the ratio an upper bound.
        power_median = statistics.median(MAX_ITER + 1 if count is None else count for count in power_first)
        ratio = statistics.median(lanczos_first) / power_median
        shown = f"> {MAX_ITER}" if power_median > MAX_ITER else f"{power_median:g}"
        bound = "< " if None in power_first else ""
        print(
            f"    median HVPs until within 1e-3: Lanczos {statistics.median(lanczos_first):g}, power {shown}; "
            f"ratio {bound}{ratio:.2f} (target <= 0.5)"
        )
        hinted = statistics.median(MAX_ITER + 1 if count is None else count for count in hinted_first)
        print(
            f"    as the probe runs it (start: random + gradient direction): median HVPs until within 1e-3 "
            f"{hinted:g}, ratio to power {bound}{hinted / power_median:.2f}"
        )
        if name == "H":
            package = pyhessian_count(model, batch, SEEDS[0])
            if package is None:
                print("    pyhessian is not installed: the power iteration above is its algorithm re-implemented")
            else:
                mine = pyhessian_stop(traces[0])
                print(
                    f"    pyhessian package, seed {SEEDS[0]}: {package[0]} HVPs, λ = {package[1]:.6g}; "
                    f"the re-implementation from the same start: {mine[0]} HVPs, λ = {mine[1]:.6g}"
                )


def _pyhessian_start(params: list[Tensor], seed: int) -> Tensor:
    # PyHessian draws torch.randn per parameter from the global generator.
    torch.manual_seed(seed)
    return flatten([torch.randn(p.size()) for p in params])


def _first_within(estimates: np.ndarray, lam: float) -> int | None:
    hits = np.flatnonzero(np.abs(estimates - lam) <= TARGET * abs(lam))
    return int(hits[0]) + 1 if len(hits) else None


def _error(value: float, lam: float) -> float:
    return abs(value - lam) / abs(lam)


def _n(count: int | None) -> str:
    return "never" if count is None else str(count)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, optimizer, batch = trained_model()
    time_hvp_against_gradient(model, batch)
    compare_solvers(model, optimizer, batch)


if __name__ == "__main__":
    main()
