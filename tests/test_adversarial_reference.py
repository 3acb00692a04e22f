"""FreeLB, SMART and R3F equal plain-PyTorch ports of their reference code.

Each port below is written from reading the reference file (never copied) and follows its
structure: the same forwards in the same order, the same random draws, the same loss scaling.
It is changed only by the differences docs/ADVERSARIAL.md lists for that method (each marked
"deviation" where it is applied). The xrobust strategy runs on a real 1-rank DeepSpeed engine;
both sides accumulate one optimizer step of GAS 2 over padded classification batches (the
references are sentence-classification code), and every parameter gradient must agree to 1e-5
relative (per tensor; floored at 1e-2 of the global gradient norm, so that tensors whose exact
gradient is ~0, pure rounding noise, are judged at the scale of the gradient's terms).

References (commits as fetched):
- FreeLB: zhuchen03/FreeLB @ eb23701, huggingface-transformers/examples/run_glue_freelb.py
  lines 223-305 (delta init, K passes with loss / K, ascent and projection) and its dp_masks
  (lines 248-255; the masks live in the modified modeling_albert.py).
- SMART: namisan/mt-dnn @ 3228e7c, mt_dnn/perturbation.py lines 16-20 and 103-152
  (SmartPerturbation.forward), mt_dnn/loss.py lines 11-22 (stable_kl) and 133-155
  (SymKlCriterion, the task's adv_loss in experiments/glue/glue_task_def.yml), called from
  mt_dnn/model.py lines 256-304 (one clean forward, loss + adv_alpha * adv_loss) and 341
  (loss / grad_accumulation_step).
- R3F: facebookresearch/fairseq @ 3d262bb, examples/rxf/rxf_src/sentence_prediction_r3f.py
  lines 58-125 (noise, detached noisy embeddings, symmetric KL, loss), normalized by the sample
  size as fairseq's trainer does.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from adv_common import join_process_group, make_batch, tiny_model  # noqa: E402

from xrobust.adversarial import build_strategy  # noqa: E402
from xrobust.config.schema import AdversarialConfig  # noqa: E402

GAS = 2
RTOL = 1e-5
GRAD_FLOOR = 1e-2


@pytest.fixture(scope="module", autouse=True)
def dist():
    join_process_group()
    yield


def batches():
    return [make_batch("classification", 900 + m, B=4, L=12) for m in range(GAS)]


def xrobust_grads(cfg: AdversarialConfig, dropout=0.0, attention_dropout=0.0) -> dict:
    """One optimizer step's accumulated gradients from the xrobust strategy on a DeepSpeed engine."""
    import deepspeed

    model = tiny_model(dropout=dropout, attention_dropout=attention_dropout)
    ds = {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": GAS, "steps_per_print": 10**9,
          "zero_optimization": {"stage": 0}}
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), config=ds)
    strategy = build_strategy(cfg, engine.module)
    for m, batch in enumerate(batches()):
        torch.manual_seed(100 + m)
        strategy.step(engine, batch)
        if m < GAS - 1:
            engine.step()
    grads = {n: p.grad.detach().clone() for n, p in engine.module.named_parameters()}
    strategy.close()
    return grads


def port_grads(port, dropout=0.0, attention_dropout=0.0, **kw) -> dict:
    model = tiny_model(dropout=dropout, attention_dropout=attention_dropout)
    model.train()
    for m, batch in enumerate(batches()):
        torch.manual_seed(100 + m)
        port(model, batch, **kw)
    # the ports never touch the other heads: no gradient is a zero gradient
    return {n: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
            for n, p in model.named_parameters()}


def assert_same_gradients(got: dict, ref: dict):
    total = math.sqrt(sum(float(r.double().pow(2).sum()) for r in ref.values()))
    assert total > 0
    errors = {k: float((got[k].double() - r.double()).norm()) / max(float(r.double().norm()), GRAD_FLOOR * total)
              for k, r in ref.items()}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= RTOL, f"{worst}: relative gradient error {errors[worst]:.3g} > {RTOL}"
    idle = [k for k in got if k.startswith("heads.") and not k.startswith("heads.cls.")]
    assert idle and all(torch.count_nonzero(got[k]) == 0 for k in idle)


def logits_from_embeddings(model, embeds, mask):
    """The classification model run on given word embeddings (the references' inputs_embeds path)."""
    hidden = model.encoder(inputs_embeds=embeds, attention_mask=mask, return_dict=True).last_hidden_state
    return model.heads["cls"](hidden)


# ---------------------------------------------------------------- FreeLB ---------------------------
class DropoutMasks:
    """The reference's dp_masks: the first pass draws and keeps one mask per dropout layer, later
    passes reuse them (run_glue_freelb.py lines 248-255 pass dp_masks back into the model)."""

    def __init__(self, model):
        self.masks, self.recording, self.calls = [], True, 0
        self.modules = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
        for m in self.modules:
            m.forward = self._forward_of(m)

    def _forward_of(self, module):
        def forward(x):
            if not module.training or module.p == 0:
                return x
            if self.recording:
                # the layer's own draw: same shape, same random stream, same mask
                self.masks.append(F.dropout(torch.ones_like(x), module.p, True))
            mask = self.masks[self.calls]
            self.calls += 1
            return x * mask
        return forward

    def next_pass(self):
        self.recording, self.calls = False, 0

    def remove(self):
        for m in self.modules:
            del m.forward


def port_freelb(model, batch, K, adv_lr, adv_init_mag, adv_max_norm, norm_type):
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    word = model.word_embeddings()
    embeds_init = word(ids)
    input_mask = mask.to(embeds_init)
    input_lengths = torch.sum(input_mask, 1)
    if norm_type == "l2":
        delta = torch.zeros_like(embeds_init).uniform_(-1, 1) * input_mask.unsqueeze(2)
        dims = input_lengths * embeds_init.size(-1)
        mag = adv_init_mag / torch.sqrt(dims)
        delta = (delta * mag.view(-1, 1, 1)).detach()
    else:
        delta = torch.zeros_like(embeds_init).uniform_(-adv_init_mag, adv_init_mag) * input_mask.unsqueeze(2)
    dp_masks = DropoutMasks(model)
    for astep in range(K):
        delta.requires_grad_()
        logits = logits_from_embeddings(model, delta + embeds_init, mask)
        dp_masks.next_pass()
        loss = F.cross_entropy(logits, labels) / GAS / K
        loss.backward()
        if astep == K - 1:
            break
        # deviation: the delta gradient is masked at padding (0 for classification: pads never
        # reach the <s> logits, so this changes nothing here)
        delta_grad = delta.grad.clone().detach() * input_mask.unsqueeze(2)
        if norm_type == "l2":
            denorm = torch.clamp(torch.norm(delta_grad.view(delta_grad.size(0), -1), dim=1).view(-1, 1, 1), min=1e-8)
            delta = (delta + adv_lr * delta_grad / denorm).detach()
            if adv_max_norm > 0:
                delta_norm = torch.norm(delta.view(delta.size(0), -1), p=2, dim=1).detach()
                exceed = (delta_norm > adv_max_norm).to(embeds_init)
                delta = (delta * (adv_max_norm / delta_norm * exceed + (1 - exceed)).view(-1, 1, 1)).detach()
        else:
            denorm = torch.clamp(delta_grad.view(delta_grad.size(0), -1).abs().amax(dim=1).view(-1, 1, 1), min=1e-8)
            delta = (delta + adv_lr * delta_grad / denorm).detach()
            if adv_max_norm > 0:
                delta = torch.clamp(delta, -adv_max_norm, adv_max_norm).detach()
        embeds_init = word(ids)
    dp_masks.remove()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_freelb_equals_reference_port_with_shared_dropout_masks(norm):
    # hidden and head dropout 0.1 with the masks shared over the K passes; attention dropout 0
    # because the port's masks are taken at nn.Dropout layers (attention dropout is functional)
    settings = dict(steps=3, step_size=0.1 if norm == "l2" else 0.02, init_mag=0.1 if norm == "l2" else 0.01,
                    max_norm=0.15 if norm == "l2" else 0.03, norm=norm)
    got = xrobust_grads(AdversarialConfig(method="freelb", backend="eager", **settings), dropout=0.1)
    ref = port_grads(port_freelb, dropout=0.1, K=settings["steps"], adv_lr=settings["step_size"],
                     adv_init_mag=settings["init_mag"], adv_max_norm=settings["max_norm"], norm_type=norm)
    assert_same_gradients(got, ref)


def test_freelb_dropout_masks_are_shared_only_when_asked():
    """reuse_dropout_masks=True: each dropout layer applies one mask in all K passes; False: fresh."""
    for reuse in (True, False):
        model = tiny_model(dropout=0.1)
        import deepspeed

        ds = {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1, "steps_per_print": 10**9,
              "zero_optimization": {"stage": 0}}
        engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                                          config=ds)
        strategy = build_strategy(AdversarialConfig(method="freelb", steps=3, backend="eager",
                                                    reuse_dropout_masks=reuse), engine.module)
        seen = []
        def record(mod, inputs, output):
            if mod.training:  # (idle heads run their zero-probe in eval mode)
                seen.append((output == 0) & (inputs[0] != 0))

        handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, torch.nn.Dropout)]
        strategy.step(engine, make_batch("classification", 5, B=4, L=12))
        for h in handles:
            h.remove()
        strategy.close()
        per_pass = len(seen) // 3
        assert per_pass > 0 and len(seen) == 3 * per_pass
        same = [torch.equal(seen[i], seen[i + per_pass]) and torch.equal(seen[i], seen[i + 2 * per_pass])
                for i in range(per_pass)]
        assert all(same) if reuse else not any(same), (reuse, same)


# ---------------------------------------------------------------- SMART ----------------------------
def stable_kl(logit, target, epsilon=1e-6):
    """mt_dnn/loss.py stable_kl with reduce=False."""
    p = F.log_softmax(logit.view(-1, logit.size(-1)).float(), 1).exp()
    y = F.log_softmax(target.view(-1, target.size(-1)).float(), 1).exp()
    rp = -(1.0 / (p + epsilon) - 1 + epsilon).detach().log()
    ry = -(1.0 / (y + epsilon) - 1 + epsilon).detach().log()
    return (p * (rp - ry) * 2).sum()


def sym_kl_criterion(input, target):
    """mt_dnn/loss.py SymKlCriterion (reduction batchmean)."""
    return (F.kl_div(F.log_softmax(input, dim=-1), F.softmax(target.detach(), dim=-1), reduction="batchmean")
            + F.kl_div(F.log_softmax(target, dim=-1), F.softmax(input.detach(), dim=-1), reduction="batchmean"))


def port_smart(model, batch, K, step_size, noise_var, epsilon, adv_alpha, ascent):
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    # model.py 256-263: one clean forward gives the logits of the task loss and of the regularizer
    embed = model.word_embeddings()(ids)
    logits = logits_from_embeddings(model, embed, mask)
    loss = F.cross_entropy(logits, labels)
    # deviation (injection point): mt-dnn perturbs the whole embedding-layer output (fwd_type 1,
    # after positions, LayerNorm and dropout) and feeds it back as inputs_embeds; xrobust adds
    # the perturbation to the word-embedding output, so f(x + 0) = f(x)
    real = mask.unsqueeze(-1).to(embed)
    noise = embed.data.new(embed.size()).normal_(0, 1) * noise_var
    noise = noise * real  # deviation: padding positions are not perturbed
    noise.requires_grad_()
    for _ in range(K):
        adv_logits = logits_from_embeddings(model, embed + noise, mask)
        if ascent == "stable_kl":
            adv_loss = stable_kl(adv_logits, logits.detach())
        elif ascent == "symmetric":  # deviation (default): the paper's symmetric KL
            t = logits.detach()
            adv_loss = (F.kl_div(F.log_softmax(adv_logits, -1), F.softmax(t, -1), reduction="sum")
                        + F.kl_div(F.log_softmax(t, -1), F.softmax(adv_logits, -1), reduction="sum"))
        else:  # deviation (option): KL(clean || perturbed) only
            adv_loss = F.kl_div(F.log_softmax(adv_logits, -1), F.softmax(logits.detach(), -1), reduction="sum")
        (delta_grad,) = torch.autograd.grad(adv_loss, noise, only_inputs=True, retain_graph=False)
        # deviation (update rule and projection, the paper's algorithm): noise + eta * g / ||g||
        # per token, then clamped to the eps-ball; mt-dnn sets noise = normalize(noise + eta * g)
        # without a projection
        g = delta_grad * real
        new = noise.detach() + step_size * g / g.abs().amax(-1, keepdim=True).clamp(min=1e-8)
        noise = (new.clamp(-epsilon, epsilon) * real).detach().requires_grad_()
    adv_logits = logits_from_embeddings(model, embed + noise, mask)
    adv_loss = sym_kl_criterion(logits, adv_logits)
    loss = loss + adv_alpha * adv_loss
    (loss / GAS).backward()


@pytest.mark.parametrize("ascent", ["symmetric", "stable_kl", "one_sided"])
def test_smart_equals_reference_port(ascent):
    # dropout everywhere (hidden, attention, head): the clean forward must be the one forward that
    # gives the loss, the ascent target and the clean side of the KL, as in mt-dnn
    settings = dict(steps=2, step_size=1e-2, init_mag=1e-3, max_norm=5e-3, norm="linf", weight=2.0)
    got = xrobust_grads(AdversarialConfig(method="smart", backend="eager", ascent_divergence=ascent, **settings),
                        dropout=0.1, attention_dropout=0.1)
    ref = port_grads(port_smart, dropout=0.1, attention_dropout=0.1, K=2, step_size=1e-2, noise_var=1e-3,
                     epsilon=5e-3, adv_alpha=2.0, ascent=ascent)
    assert_same_gradients(got, ref)


def test_smart_ascent_kinds_differ():
    """The three ascent objectives are different methods, and far enough apart on this problem
    that the port comparisons above (1e-5) tell them apart."""
    settings = dict(method="smart", backend="eager", steps=2, step_size=1e-2, init_mag=1e-3, max_norm=5e-3,
                    norm="linf", weight=2.0)
    grads = {k: xrobust_grads(AdversarialConfig(ascent_divergence=k, **settings))
             for k in ("symmetric", "one_sided", "stable_kl")}

    def distance(a, b):
        num = sum(float((a[k] - b[k]).double().pow(2).sum()) for k in a)
        return math.sqrt(num / sum(float(b[k].double().pow(2).sum()) for k in b))

    kinds = list(grads)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            assert distance(grads[a], grads[b]) > 10 * RTOL, (a, b)


# ---------------------------------------------------------------- R3F ------------------------------
def port_r3f(model, batch, eps, r3f_lambda):
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    token_embeddings = model.word_embeddings()(ids)
    input_logits = logits_from_embeddings(model, token_embeddings, mask)
    noise = torch.distributions.uniform.Uniform(low=-eps, high=eps).sample(sample_shape=token_embeddings.shape)
    noise = noise * mask.unsqueeze(-1).to(noise)  # deviation: padding positions are not perturbed
    noised_embeddings = token_embeddings.detach().clone() + noise
    noised_logits = logits_from_embeddings(model, noised_embeddings, mask)
    symm_kl = (F.kl_div(F.log_softmax(noised_logits, dim=-1), F.softmax(input_logits, dim=-1), None, None, "sum")
               + F.kl_div(F.log_softmax(input_logits, dim=-1), F.softmax(noised_logits, dim=-1), None, None, "sum")
               ) / noised_logits.size(0)
    sample_size = labels.numel()
    loss = F.nll_loss(F.log_softmax(input_logits, dim=-1), labels, reduction="sum")
    loss = loss + r3f_lambda * symm_kl * sample_size
    (loss / sample_size / GAS).backward()  # fairseq's trainer divides by the summed sample size


def test_r3f_equals_reference_port():
    # dropout 0: xrobust runs the clean and noisy copies as one doubled batch, whose dropout masks
    # are drawn for both halves at once (same distribution, other draws than two forwards)
    got = xrobust_grads(AdversarialConfig(method="r3f", backend="eager", init_mag=1e-2, weight=1.5, noise="uniform"))
    ref = port_grads(port_r3f, eps=1e-2, r3f_lambda=1.5)
    assert_same_gradients(got, ref)


def test_r3f_noisy_branch_does_not_train_the_embedding_table():
    """With lambda large, the word-embedding gradient differs from one through both branches."""
    got = xrobust_grads(AdversarialConfig(method="r3f", backend="eager", init_mag=1e-2, weight=1.5, noise="uniform"))

    def both_branches(model, batch, eps, r3f_lambda):  # the port without fairseq's detach
        ids, mask = batch["input_ids"], batch["attention_mask"]
        emb = model.word_embeddings()(ids)
        clean = logits_from_embeddings(model, emb, mask)
        noise = torch.distributions.uniform.Uniform(low=-eps, high=eps).sample(sample_shape=emb.shape)
        noisy = logits_from_embeddings(model, emb + noise * mask.unsqueeze(-1).to(noise), mask)
        kl = (F.kl_div(F.log_softmax(noisy, -1), F.softmax(clean, -1), reduction="batchmean")
              + F.kl_div(F.log_softmax(clean, -1), F.softmax(noisy, -1), reduction="batchmean"))
        ((F.cross_entropy(clean, batch["labels"]) + r3f_lambda * kl) / GAS).backward()

    ref = port_grads(both_branches, eps=1e-2, r3f_lambda=1.5)
    w = "encoder.embeddings.word_embeddings.weight"
    assert float((got[w] - ref[w]).norm()) > 1e-3 * float(ref[w].norm())
    other = "encoder.encoder.layer.0.attention.self.query.weight"
    assert float((got[other] - ref[other]).norm()) <= RTOL * float(ref[other].norm())
