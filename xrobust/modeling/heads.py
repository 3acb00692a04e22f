"""One head per task format. Heads read the encoder's last hidden state (B, L, d)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.collate import IGNORE_INDEX


def wide(x: torch.Tensor) -> torch.Tensor:
    """Losses are computed in fp32 or wider: half-precision logits are upcast, fp64 stays fp64."""
    return x if x.dtype == torch.float64 else x.float()


class ClassificationHead(nn.Module):
    """RoBERTa-style: dense + tanh on <s>, then the output projection."""

    def __init__(self, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_labels)

    def forward(self, hidden_states, **_):
        x = self.dropout(hidden_states[:, 0])
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out(x)

    @staticmethod
    def loss(logits, labels):
        return F.cross_entropy(wide(logits), labels)


class MultipleChoiceHead(nn.Module):
    """Scores each (prompt, choice) row on <s>; inputs arrive flattened to (B * n, L)."""

    def __init__(self, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.num_choices = num_labels
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 1)

    def forward(self, hidden_states, num_choices: int, **_):
        return self.out(self.dropout(hidden_states[:, 0])).view(-1, num_choices)

    @staticmethod
    def loss(logits, labels):
        return F.cross_entropy(wide(logits), labels)


class SpanHead(nn.Module):
    def __init__(self, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.out = nn.Linear(hidden, 2)

    def forward(self, hidden_states, **_):
        return self.out(hidden_states)  # (B, L, 2): start, end

    @staticmethod
    def loss(logits, labels):
        start, end = labels
        length = logits.size(1)
        start = start.clamp(0, length - 1)
        end = end.clamp(0, length - 1)
        return (F.cross_entropy(wide(logits[..., 0]), start) + F.cross_entropy(wide(logits[..., 1]), end)) / 2


class TaggingHead(nn.Module):
    def __init__(self, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_labels)

    def forward(self, hidden_states, **_):
        return self.out(self.dropout(hidden_states))

    @staticmethod
    def loss(logits, labels):
        return F.cross_entropy(wide(logits).flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


HEADS = {
    "classification": ClassificationHead,
    "multiple_choice": MultipleChoiceHead,
    "span_qa": SpanHead,
    "tagging": TaggingHead,
}
