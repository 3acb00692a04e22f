"""Encoder (any HF AutoModel) + named heads. Only the encoder carries over between phases.

Adversarial and robustness perturbations enter through the model's embedding hook
(`DeltaInjector` on `model.word_embeddings()`): a delta added to the word-embedding output, whose
layout is the encoder's (multiple choice flattened, see `embedding_mask`).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
import transformers.utils
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..tasks.formats import TARGET_KEYS, get_format
from .divergence import divergence

HEADS_FILE = "heads.pt"
HEADS_META = "heads.json"


@dataclass
class HeadSpec:
    name: str
    format: str
    num_labels: int
    labels: tuple = ()


@dataclass
class ModelOutput(transformers.utils.ModelOutput):
    """A dict as well as a dataclass (transformers' ModelOutput): DeepSpeed's ZeRO-3 hooks find the
    tensors of a tuple, list or dict output and attach the module's pre-backward hook to them; a
    plain object hides them (DeepSpeed warns, and the module's backward is missed in its trace)."""

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    hidden_states: Optional[tuple] = None


def head_spec_for(task) -> HeadSpec:
    """The head a task trains: tasks naming the same head share it (e.g. the ANLI+ parts)."""
    return HeadSpec(name=task.head_name, format=task.format, num_labels=task.task_format.num_outputs(task),
                    labels=tuple(task.labels))


def _head(spec: HeadSpec, hidden: int, dropout: float) -> nn.Module:
    head = get_format(spec.format).head
    if head is None:
        raise ConfigError(f"head {spec.name!r}: format {spec.format!r} has no head (it is scored by embedding "
                          "similarity)")
    return head(hidden, spec.num_labels, dropout)


def embedding_mask(batch: dict) -> torch.Tensor:
    """Attention mask in the embedding layout: multiple-choice (B, n, L) becomes (B * n, L)."""
    mask = batch["attention_mask"]
    return mask.flatten(0, 1) if mask.dim() == 3 else mask


def delta_shape(batch: dict, hidden: int) -> tuple[int, int, int]:
    """The shape of a perturbation of `batch`'s word-embedding output: (B', L, hidden)."""
    m = embedding_mask(batch)
    return (m.size(0), m.size(1), hidden)


class DeltaInjector:
    """Holds the current delta (fp32, (B', L, d)) and adds it to the embedding output while set.

    A forward hook on `model.word_embeddings()`: input_ids reach the encoder unchanged, so XLM-R's
    padding-aware position ids stay right, and under ZeRO-3 the embedding weight is gathered by
    DeepSpeed's own hooks as in plain training.

    `detach_from=n` also cuts the embedding output of rows n: from the graph before delta is added
    (R3F's noisy branch: no word-embedding gradient flows through the noisy copy, as in fairseq)."""

    def __init__(self, module: nn.Module):
        self.delta: torch.Tensor | None = None
        self.detach_from: int | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.delta is None:
            return output
        if self.delta.shape != output.shape:
            raise RuntimeError(f"adversarial delta has shape {tuple(self.delta.shape)}, "
                               f"embedding output {tuple(output.shape)}")
        if self.detach_from is not None:
            n = self.detach_from
            output = torch.cat([output[:n], output[n:].detach()], 0)
        # delta stays fp32 (the update kernels need it); the sum is in the embedding dtype.
        return output + self.delta.to(output.dtype)

    @contextmanager
    def active(self, delta: torch.Tensor | None, detach_from: int | None = None):
        self.delta, self.detach_from = delta, detach_from
        try:
            yield
        finally:
            self.delta, self.detach_from = None, None

    def remove(self) -> None:
        self._handle.remove()


class XRobustModel(nn.Module):
    def __init__(self, encoder: nn.Module, head_specs: list[HeadSpec], dropout: float):
        super().__init__()
        self.encoder = encoder
        self.head_specs = {h.name: h for h in head_specs}
        hidden = encoder.config.hidden_size
        self.heads = nn.ModuleDict({h.name: _head(h, hidden, dropout) for h in head_specs})
        # heads in the encoder's dtype: ZeRO-3 flattens all parameters of a group into one buffer
        self.heads.to(dtype=next(encoder.parameters()).dtype)

    def word_embeddings(self) -> nn.Module:
        """Adversarial deltas are injected by a forward hook on this module (DeltaInjector)."""
        return self.encoder.get_input_embeddings()

    def forward(self, head: str, input_ids, attention_mask, labels=None, start_positions=None,
                end_positions=None, token_type_ids=None, output_hidden_states: bool = False, **_unused):
        fmt = self.format_of(head)
        inputs, head_args = fmt.encoder_inputs({"input_ids": input_ids, "attention_mask": attention_mask,
                                                 "token_type_ids": token_type_ids})
        # segment ids only when the features carry them (BERT-style tokenizers): an encoder without
        # token types (e.g. DistilBERT) takes no such argument
        if inputs["token_type_ids"] is None:
            del inputs["token_type_ids"]
        out = self.encoder(**inputs, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.heads[head](out.last_hidden_state, **head_args)
        if self.training and torch.is_grad_enabled() and len(self.heads) > 1:
            logits = logits + self._idle_heads_term(head, out.last_hidden_state)
        targets = {"labels": labels, "start_positions": start_positions, "end_positions": end_positions}
        return ModelOutput(loss=fmt.loss(logits, targets), logits=logits,
                           hidden_states=out.hidden_states if output_hidden_states else None)

    # -- losses: strategies ask the model, never the batch's task format -------------------------------
    def format_of(self, head: str):
        """The task format (xrobust.tasks.formats) of a head."""
        return get_format(self.head_specs[head].format)

    @staticmethod
    def inputs(batch: dict) -> dict:
        """The batch without its targets: what a forward that computes no loss takes."""
        return {k: v for k, v in batch.items() if k not in TARGET_KEYS}

    def loss(self, batch: dict, logits: torch.Tensor) -> torch.Tensor:
        """The task loss of `logits` (a forward of `batch`'s inputs) against the batch's targets."""
        return self.format_of(batch["head"]).loss(logits, batch)

    def divergence(self, kind: str, batch: dict, a_logits, b_logits, *, detach_targets: bool = False):
        """The divergence `kind` (modeling.divergence.KINDS) between two predictions of `batch`,
        reduced as the head's format does (over attended positions, labelled tokens, ...)."""
        return divergence(kind, self.format_of(batch["head"]), a_logits, b_logits,
                          attention_mask=embedding_mask(batch), labels=batch.get("labels"),
                          detach_targets=detach_targets)

    def symmetric_kl(self, batch: dict, a_logits, b_logits, *, detach_targets: bool = False):
        """KL(a || b) + KL(b || a), reduced per format: `divergence("symmetric", ...)`."""
        return self.divergence("symmetric", batch, a_logits, b_logits, detach_targets=detach_targets)

    def _idle_heads_term(self, active: str, hidden_states):
        """A zero that depends on every other head's parameters, added to the training logits.

        The idle-head contract: any objective computed from the logits of a training forward
        (task loss, KL between two forwards, several forwards per micro-step) gives every head a
        real gradient, exactly zero for the heads the micro-step does not use. ZeRO stages 0-2 fill
        missing gradients with zeros, but ZeRO-3 steps a parameter that got no gradient with its
        previous reduced gradient, so an idle head would move. Carrying the term on the logits
        (rather than on the loss) keeps it in every strategy's objective, including those that
        build it from logits only (PGD, SMART, R3F). The probe is one detached position, run with
        dropout off so that it neither touches the encoder's gradients nor draws random numbers
        (dropout masks stay those of the active head's forward)."""
        probe = hidden_states[:1, :1].detach()
        term = probe.new_zeros(())
        for name, module in self.heads.items():
            if name == active:
                continue
            was_training = module.training
            module.train(False)
            try:
                term = term + module(probe, num_choices=1).sum() * 0.0
            finally:
                module.train(was_training)
        return term


def save_heads(model: XRobustModel, out_dir: Path, state_dict: dict | None = None) -> None:
    """Heads next to the HF encoder: heads.pt (weights) and heads.json (what to rebuild)."""
    from ..io import atomic_write_bytes, atomic_write_json
    import io

    state = state_dict if state_dict is not None else model.heads.state_dict()
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    atomic_write_bytes(out_dir / HEADS_FILE, buf.getvalue())
    atomic_write_json(out_dir / HEADS_META, [asdict(h) for h in model.head_specs.values()])


def load_head_specs(model_dir: Path) -> list[HeadSpec]:
    path = Path(model_dir) / HEADS_META
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; expected the heads description written at the end of a phase")
    try:
        return [HeadSpec(**{**h, "labels": tuple(h.get("labels", ()))}) for h in json.loads(path.read_text())]
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable heads description ({exc})") from None


def load_heads_state(model_dir: Path) -> dict:
    path = Path(model_dir) / HEADS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing head weights")
    return torch.load(path, map_location="cpu", weights_only=True)
