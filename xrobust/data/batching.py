"""Length-grouped, resumable batch sampler.

Examples are shuffled, cut into mega-batches of `mega_batch_mult` batches, sorted by length
inside each mega-batch and cut into batches; then the batch order is shuffled. Batches hold
similar lengths (little padding) while the data order stays random. The order is a pure
function of (seed, epoch), so a run resumed from `state_dict()` sees exactly the batches the
interrupted run would have seen next.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from xrobust.errors import CheckpointError, ConfigError


class LengthGroupedBatchSampler:
    """Yields lists of dataset indices.

    lengths: token length per feature (`xrobust.data.featurize.feature_lengths`).
    group_by_length=False gives plain shuffled batches (baseline for the padding benchmark).
    num_replicas/rank: data-parallel sharding; every rank computes the same batch list and
    takes every num_replicas-th batch (the tail is dropped so ranks run the same step count).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int = 0, mega_batch_mult: int = 50,
                 shuffle: bool = True, group_by_length: bool = True, drop_last: bool = False,
                 longest_first: bool = True, num_replicas: int = 1, rank: int = 0):
        if batch_size < 1:
            raise ConfigError(f"batch sampler: batch_size={batch_size}; expected an int >= 1")
        if mega_batch_mult < 1:
            raise ConfigError(f"batch sampler: mega_batch_mult={mega_batch_mult}; expected an int >= 1")
        if not 0 <= rank < num_replicas:
            raise ConfigError(f"batch sampler: rank={rank} with num_replicas={num_replicas}; expected 0 <= rank < num_replicas")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.mega_batch_mult = mega_batch_mult
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self.drop_last = drop_last
        self.longest_first = longest_first
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.position = 0  # batches of the current epoch already yielded (on this rank)

    # -- order ---------------------------------------------------------------------------------
    def _all_batches(self, epoch: int) -> list[list[int]]:
        n = len(self.lengths)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.group_by_length:
            mega = self.batch_size * self.mega_batch_mult
            chunks = []
            for lo in range(0, n, mega):
                idx = order[lo:lo + mega]
                # stable sort: ties keep the shuffled order, so the result is reproducible
                chunks.append(idx[np.argsort(-self.lengths[idx], kind="stable")])
            order = np.concatenate(chunks) if chunks else order
        batches = [order[i:i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle and self.group_by_length and len(batches) > 1:
            perm = rng.permutation(len(batches))
            batches = [batches[i] for i in perm]
            if self.longest_first:
                # the longest batch goes first: an out-of-memory shows up at step 1, not hours in
                longest = max(range(len(batches)), key=lambda b: int(self.lengths[batches[b]].max()))
                batches.insert(0, batches.pop(longest))
        return batches

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches for `epoch` (default: the current one), from the start."""
        allb = self._all_batches(self.epoch if epoch is None else epoch)
        if self.num_replicas > 1:
            usable = len(allb) - len(allb) % self.num_replicas
            allb = allb[self.rank:usable:self.num_replicas]
        return allb

    # -- iteration -----------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.position = 0

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        while self.position < len(batches):
            b = batches[self.position]
            self.position += 1
            yield b
        # a finished epoch rolls over so a plain `for` loop per epoch works without set_epoch
        self.epoch += 1
        self.position = 0

    def __len__(self) -> int:
        return len(self.batches())

    # -- resume --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """`position` counts batches handed out. A DataLoader with workers prefetches ahead of
        training, so a loop that checkpoints should store the number of batches it consumed:
        `state = sampler.state_dict(); state["position"] = consumed_this_epoch`."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "num_samples": len(self.lengths),
                "batch_size": self.batch_size, "num_replicas": self.num_replicas}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "num_samples", "batch_size", "num_replicas"):
            mine = self.seed if key == "seed" else (len(self.lengths) if key == "num_samples"
                                                   else getattr(self, key))
            if key in state and state[key] != mine:
                raise CheckpointError(
                    f"batch sampler state: {key}={state[key]} in the checkpoint but {mine} now; "
                    "resuming would change the data order (same data, batch size, seed and world size expected)"
                )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])


def padding_stats(batches: Sequence[Sequence[int]], lengths: Sequence[int], max_length: int | None = None) -> dict:
    """Real vs padded token counts of a batch list: dynamic (to longest) or fixed (to max_length)."""
    lengths = np.asarray(lengths)
    real = int(sum(lengths[b].sum() for b in batches))
    if max_length is None:
        padded = int(sum(len(b) * lengths[b].max() for b in batches))
    else:
        padded = int(sum(len(b) for b in batches) * max_length)
    return {"real_tokens": real, "padded_tokens": padded, "efficiency": real / padded if padded else 1.0}
