"""The divergences SMART and R3F use (their config names SMART's ascent kind): owned by the model,
xrobust.modeling.divergence."""

from ..modeling.divergence import KINDS, divergence, symmetric_kl  # noqa: F401
