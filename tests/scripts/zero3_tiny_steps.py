"""Two ZeRO-3 training steps of a tiny XRobustModel on 1 rank, fp32; prints one JSON line with what
the tests check: whether DeepSpeed warned that it cannot see the output's tensors, whether its
pre-backward hook wraps the loss, whether the fp32 master aliases the parameter partitions, the
model-state bytes and the losses.

--plain-output: the model returns its fields in a plain object (the case DeepSpeed cannot see).
--no-share-master: DeepSpeed's own separate fp32 master copy (engine.share_fp32_master skipped).
"""

import argparse
import json
import logging
from dataclasses import dataclass

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--plain-output", action="store_true")
parser.add_argument("--no-share-master", action="store_true")
args = parser.parse_args()

from transformers import AutoModel, XLMRobertaConfig  # noqa: E402

from xrobust import distributed as dist  # noqa: E402
from xrobust.bench.training import model_state_bytes  # noqa: E402
from xrobust.config.schema import PhaseConfig  # noqa: E402
from xrobust.modeling import HeadSpec, XRobustModel  # noqa: E402
from xrobust.training import engine as engine_module  # noqa: E402
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
if args.no_share_master:
    engine_module.share_fp32_master = lambda optimizer: 0

dist.init_distributed()
phase = PhaseConfig(tasks=["t"], batch_size=2, micro_batch_size=2, lr=1e-3, warmup_ratio=0.0)
ds = resolve_ds_config("cpu", phase, 1, torch.float32)
ctx = ZeroInitContext(ds)
torch.manual_seed(0)
config = XLMRobertaConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=40)
model = XRobustModel(AutoModel.from_config(config, add_pooling_layer=False), [HeadSpec("t", "classification", 3)], 0.0)
engine, optimizer, _ = build_engine(model, phase, ds, total_steps=2)
gen = torch.Generator().manual_seed(1)
losses, grad_fns = [], []
for _ in range(2):
    out = engine(head="t", input_ids=torch.randint(3, 100, (2, 8), generator=gen),
                 attention_mask=torch.ones(2, 8, dtype=torch.long), labels=torch.tensor([0, 2]))
    engine.backward(out.loss)
    engine.step()
    losses.append(out.loss.item())
    grad_fns.append(type(out.loss.grad_fn).__name__)
aliased = [m.untyped_storage().data_ptr() == p.untyped_storage().data_ptr()
           for p, m in zip(optimizer.fp16_partitioned_groups_flat, optimizer.fp32_partitioned_groups_flat)]
print("RESULT " + json.dumps({
    "warned": any("cannot be detected" in m for m in capture.messages),
    "loss_grad_fn": grad_fns[0], "logits_shape": list(out.logits.shape), "losses": losses,
    "master_aliased": aliased, "model_state_bytes": model_state_bytes(engine),
    "parameters": sum(p.ds_numel for p in engine.module.parameters()),
}), flush=True)
ctx.close()
