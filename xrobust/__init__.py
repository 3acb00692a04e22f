"""xrobust: adversarial fine-tuning for cross-lingual robustness (X-STILTs on DeepSpeed ZeRO-3)."""

__version__ = "0.1.0"
