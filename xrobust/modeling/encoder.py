"""What an encoder architecture accepts, read from its config rather than assumed to be XLM-R's.

xrobust runs any Hugging Face `AutoModel` encoder (XLM-R, mBERT, DistilBERT, ...). Architectures
differ in the names of their dropout probabilities (`hidden_dropout_prob` and
`attention_probs_dropout_prob` for BERT and XLM-R, `dropout` and `attention_dropout` for
DistilBERT) and in their constructor's arguments (BERT and XLM-R take `add_pooling_layer`,
DistilBERT does not); these helpers derive both from the config.
"""

from __future__ import annotations

import inspect

from ..errors import ConfigError


def dropout_keys(config) -> list[str]:
    """The config's dropout probabilities: float attributes named `*dropout*` or `*_pdrop`.

    An unset one (None, e.g. BERT's `classifier_dropout`, which falls back to the hidden dropout) is
    not a probability and stays unset."""
    return sorted(key for key, value in config.to_dict().items()
                  if isinstance(value, float) and ("dropout" in key or key.endswith("_pdrop")))


def set_dropout(config, dropout: float, where: str = "model.dropout") -> list[str]:
    """Set every dropout probability of the encoder config to `dropout`; returns the keys set.

    A config without any is an error naming `where`: the setting would otherwise be ignored."""
    keys = dropout_keys(config)
    if not keys:
        raise ConfigError(f"key '{where}': the encoder config ({getattr(config, 'model_type', type(config).__name__)}) "
                          "has no dropout probability to set; remove the key to keep the encoder's own")
    for key in keys:
        setattr(config, key, float(dropout))
    return keys


def encoder_kwargs(config) -> dict:
    """Constructor arguments for `AutoModel.from_config` / `from_pretrained` that this architecture
    takes: no pooler where the model has one to leave out (the heads read the hidden states)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    try:
        found = MODEL_MAPPING[type(config)]
    except KeyError:  # not an AutoModel architecture: AutoModel's own error names it
        return {}
    classes = found if isinstance(found, (tuple, list)) else (found,)  # a few configs map to several
    takes_pooler = all("add_pooling_layer" in inspect.signature(cls.__init__).parameters for cls in classes)
    return {"add_pooling_layer": False} if takes_pooler else {}
