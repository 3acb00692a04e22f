"""The models the benchmarks build from a config (random weights, nothing downloaded) and the one
FLOP formula (its derivation: xrobust.bench.gpu)."""

from __future__ import annotations

# XLM-R Large (no download: the architecture is built from these numbers with random weights)
XLMR_LARGE = dict(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                  layer_norm_eps=1e-5)


def model_config(name: str):
    """XLM-R Large ("xlmr-large"), else the demo encoder's shape with a 1,200-word vocabulary; no dropout."""
    from transformers import XLMRobertaConfig

    if name == "xlmr-large":
        return XLMRobertaConfig(**XLMR_LARGE, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    from ..demo.world import MODEL_CONFIG

    return XLMRobertaConfig(**MODEL_CONFIG, vocab_size=1200, max_position_embeddings=130,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def count_weights(config) -> tuple[int, int]:
    """(parameters with the 3-way classification head, N of the FLOP formula: the weights of the
    encoder's linear layers), counted on a meta-device model (nothing is allocated)."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):
        encoder = AutoModel.from_config(config, add_pooling_layer=False)
    hidden = config.hidden_size
    head = hidden * hidden + hidden + hidden * 3 + 3
    n_matmul = sum(m.weight.numel() for m in encoder.modules() if isinstance(m, torch.nn.Linear))
    return sum(p.numel() for p in encoder.parameters()) + head, n_matmul


def train_flops_per_token(n_matmul: int, layers: int, seq_len: int, hidden: int) -> int:
    """Forward + backward FLOPs per token: 6 N + 12 L s d (derived in xrobust.bench.gpu's docstring)."""
    return 6 * n_matmul + 12 * layers * seq_len * hidden
