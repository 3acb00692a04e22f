"""Task registry: `get_task(name)`, `all_tasks()`, the intermediate and XTREME target lists."""

from .adapters import Adapter
from .registry import (
    DEMO_LANGUAGES,
    DEMO_TASKS,
    INTERMEDIATE_TASKS,
    SPLITS,
    TARGET_TASKS,
    HubSource,
    TaskSpec,
    all_tasks,
    get_task,
)

__all__ = [
    "Adapter",
    "DEMO_LANGUAGES",
    "DEMO_TASKS",
    "INTERMEDIATE_TASKS",
    "SPLITS",
    "TARGET_TASKS",
    "HubSource",
    "TaskSpec",
    "all_tasks",
    "get_task",
]
