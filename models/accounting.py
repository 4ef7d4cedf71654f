"""Parameter counts of a built model, grouped as `sweeps.accounting` defines them (nanochat's ``num_scaling_params``).

The conventions (which parameters are embedding, which count towards compute) and the FLOP formulas live once, in
`sweeps.accounting`, with the closed-form counts of a shape; this module counts a real module's parameters into the
same `Counts`, so a trial records what it trained and a test can hold the closed form to it.
"""

from __future__ import annotations

from torch import nn

from sweeps.accounting import Counts


def _embedding_modules(model: nn.Module) -> list[nn.Module]:
    modules = [model.get_input_embeddings(), model.get_output_embeddings()]
    modules += [m for name, m in model.named_modules() if name.endswith("wpe")]  # GPT-2 learned positions
    return [m for m in modules if m is not None]


def count_params(model: nn.Module) -> Counts:
    unique = {id(p): p for p in model.parameters()}
    embedding_ids = {id(p) for m in _embedding_modules(model) for p in m.parameters()}
    embedding = sum(p.numel() for i, p in unique.items() if i in embedding_ids)
    total = sum(p.numel() for p in unique.values())
    input_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    output = model.get_output_embeddings()
    head_params = list(output.parameters()) if output is not None else []
    head = sum(p.numel() for p in head_params if id(p) not in input_ids)
    head_matmul = sum(p.numel() for p in head_params)
    return Counts(embedding=embedding, non_embedding=total - embedding, total=total, head=head, head_matmul=head_matmul)
