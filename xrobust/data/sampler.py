"""Multi-task sampling: which task's batch each optimizer step uses.

Strategies (p_i = probability of task i, n_i its training-set size):
  uniform               p_i = 1 / K
  proportional          p_i ~ n_i
  capped_proportional   p_i ~ min(n_i, cap)
  temperature           p_i ~ n_i ** (1 / T)   (T=1: proportional, T->inf: uniform)

The draw at step t is a pure function of (seed, t): uniforms come in fixed blocks, block b from
`default_rng([seed, b])`. Resuming therefore needs only the step counter, and a resumed run
draws exactly the tasks the interrupted run would have drawn.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np

from xrobust.errors import CheckpointError, ConfigError

STRATEGIES = ("uniform", "proportional", "capped_proportional", "temperature")
_BLOCK = 4096


class MultiTaskSampler:
    def __init__(self, sizes: Mapping[str, int], strategy: str = "proportional", *, cap: int | None = None,
                 temperature: float | None = None, seed: int = 0):
        if not sizes:
            raise ConfigError("multi-task sampler: no tasks given; expected {task: train size}")
        if strategy not in STRATEGIES:
            raise ConfigError(f"multi-task sampler: strategy={strategy!r}; expected one of {', '.join(STRATEGIES)}")
        for task, n in sizes.items():
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise ConfigError(f"multi-task sampler: task {task!r} has size {n!r}; expected an int >= 1")
        if strategy == "capped_proportional" and (cap is None or cap < 1):
            raise ConfigError(f"multi-task sampler: capped_proportional needs cap >= 1; got cap={cap!r}")
        if strategy == "temperature" and (temperature is None or not temperature > 0):
            raise ConfigError(f"multi-task sampler: temperature strategy needs temperature > 0; got {temperature!r}")
        self.tasks = list(sizes)  # insertion order fixes the task <-> interval mapping
        self.sizes = {t: int(sizes[t]) for t in self.tasks}
        self.strategy = strategy
        self.cap = cap
        self.temperature = temperature
        self.seed = seed
        self.step = 0
        n = np.array([self.sizes[t] for t in self.tasks], dtype=np.float64)
        if strategy == "uniform":
            w = np.ones_like(n)
        elif strategy == "proportional":
            w = n
        elif strategy == "capped_proportional":
            w = np.minimum(n, float(cap))
        else:
            # in log space: n ** (1/T) overflows for small T and large n
            logw = np.log(n) / float(temperature)
            w = np.exp(logw - logw.max())
        self._p = w / w.sum()
        self._cdf = np.cumsum(self._p)
        self._cdf[-1] = 1.0  # guard against rounding leaving a gap at the top
        self._block_id = -1
        self._block = None

    def probabilities(self) -> dict[str, float]:
        return {t: float(p) for t, p in zip(self.tasks, self._p)}

    def _uniform(self, t: int) -> float:
        b = t // _BLOCK
        if b != self._block_id:
            self._block = np.random.default_rng([self.seed, b]).random(_BLOCK)
            self._block_id = b
        return float(self._block[t % _BLOCK])

    def task_at(self, step: int) -> str:
        """The task of optimizer step `step` (0-based), independent of what was drawn before."""
        if len(self.tasks) == 1:
            return self.tasks[0]
        return self.tasks[int(np.searchsorted(self._cdf, self._uniform(step), side="right"))]

    def sample(self) -> str:
        task = self.task_at(self.step)
        self.step += 1
        return task

    def __iter__(self) -> Iterator[str]:
        while True:
            yield self.sample()

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed, "strategy": self.strategy, "probabilities": self.probabilities()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise CheckpointError(f"multi-task sampler state: seed={state['seed']} in the checkpoint but {self.seed} now")
        saved = state.get("probabilities")
        if saved is not None:
            mine = self.probabilities()
            if set(saved) != set(mine) or any(abs(saved[t] - mine[t]) > 1e-9 for t in mine):
                raise CheckpointError(
                    f"multi-task sampler state: task probabilities {saved} in the checkpoint differ from {mine} now; "
                    "expected the same tasks, sizes and strategy when resuming"
                )
        self.step = int(state["step"])
