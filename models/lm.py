"""How to build a language model of a given shape: a `transformers` causal LM from a config, no weights downloaded.

This module knows shapes only (OLMo-core's model ladder keeps "a model of size X" apart from "a run for it"):
a `sweeps.accounting.ModelShape`, the one description of a shape a trial carries, and the vocabulary size of its token
store. The initialization scheme lives in `models.init`, the accounting in `sweeps.accounting` (closed form) and
`models.accounting` (counting a built model). Dropout is off everywhere, because a scaling-law trial trains for one
epoch and dropout would only add noise to the loss.

Shapes: ``llama`` uses a SwiGLU MLP of width round_up(8/3·d_model, 16) (LLaMA's 2/3·4d, so the MLP costs what a 4d GELU
MLP costs) and untied input/output embeddings; ``gpt2`` uses a 4·d_model GELU MLP, learned positions and a tied LM head.
"""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from sweeps.accounting import ModelShape, llama_mlp_width

ARCHITECTURES = ("llama", "gpt2")


def build_lm(shape: ModelShape, vocab_size: int) -> PreTrainedModel:
    """A freshly constructed causal LM of `shape` with `vocab_size` embedding rows (float32, on the current default
    device)."""
    if shape.d_model % shape.head_dim:
        raise ValueError(f"d_model {shape.d_model} is not divisible by head_dim {shape.head_dim}")
    if shape.architecture == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=shape.d_model,
            intermediate_size=llama_mlp_width(shape.d_model),
            num_hidden_layers=shape.n_layer,
            num_attention_heads=shape.n_head,
            num_key_value_heads=shape.n_head,
            max_position_embeddings=shape.seq_len,
            tie_word_embeddings=False,
            attention_dropout=0.0,
            use_cache=False,
        )
        model_cls: type[PreTrainedModel] = LlamaForCausalLM
    elif shape.architecture == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size,
            n_embd=shape.d_model,
            n_layer=shape.n_layer,
            n_head=shape.n_head,
            n_positions=shape.seq_len,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            use_cache=False,
        )
        model_cls = GPT2LMHeadModel
    else:
        raise ValueError(f"unknown architecture {shape.architecture!r}; choose one of {ARCHITECTURES}")
    config._attn_implementation = "sdpa"
    model = model_cls(config)
    return model.to(torch.float32)


def use_bf16_autocast(model: PreTrainedModel, device_type: str) -> None:
    """Run `model`'s forward under bf16 autocast: bf16 matmuls, fp32 master weights, gradients and optimizer state."""
    model.forward = torch.autocast(device_type, dtype=torch.bfloat16)(model.forward)
