"""One ZeRO-3 training step of a tiny XRobustModel (1 rank); prints a JSON line saying whether
DeepSpeed warned that it cannot see the output's tensors and whether its pre-backward hook wraps the
loss. `--plain-output` returns the same fields in a plain object instead (the case DeepSpeed cannot see).
"""

import argparse
import json
import logging
from dataclasses import dataclass

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--plain-output", action="store_true")
args = parser.parse_args()

from transformers import AutoModel, XLMRobertaConfig  # noqa: E402

from xrobust.config.schema import PhaseConfig  # noqa: E402
from xrobust.modeling import HeadSpec, XRobustModel  # noqa: E402
from xrobust.training import distributed as dist  # noqa: E402
from xrobust.training.engine import ZeroInitContext, build_engine, resolve_ds_config  # noqa: E402


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


capture = Capture()
logging.getLogger("DeepSpeed").addHandler(capture)


@dataclass
class PlainOutput:
    loss: object
    logits: object


if args.plain_output:
    forward = XRobustModel.forward

    def plain_forward(self, *a, **kw):
        out = forward(self, *a, **kw)
        return PlainOutput(out.loss, out.logits)

    XRobustModel.forward = plain_forward

dist.init_distributed()
phase = PhaseConfig(tasks=["t"], batch_size=2, micro_batch_size=2, lr=1e-3)
ds = resolve_ds_config("cpu", phase, 1, torch.float32)
ctx = ZeroInitContext(ds)
torch.manual_seed(0)
config = XLMRobertaConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=40)
model = XRobustModel(AutoModel.from_config(config, add_pooling_layer=False), [HeadSpec("t", "classification", 3)], 0.0)
engine, _, _ = build_engine(model, phase, ds, total_steps=1)
out = engine(head="t", input_ids=torch.randint(3, 100, (2, 8)), attention_mask=torch.ones(2, 8, dtype=torch.long),
             labels=torch.tensor([0, 2]))
engine.backward(out.loss)
engine.step()
print("RESULT " + json.dumps({
    "warned": any("cannot be detected" in m for m in capture.messages),
    "loss_grad_fn": type(out.loss.grad_fn).__name__,
    "loss": out.loss.item(), "logits_shape": list(out.logits.shape),
}), flush=True)
ctx.close()
