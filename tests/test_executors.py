"""The executor seam's pure logic: grouping by key, routing whole groups to workers, one-line errors.

The Ray executor itself runs on a real cluster in tests/test_executors_ray.py (slow).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from chatqa.config import Config
from chatqa.errors import ConfigError
from chatqa.executors import LocalExecutor, RayExecutor, Work, _assign, grouped, make_executor


def test_items_are_grouped_by_key_in_first_seen_order() -> None:
    works = [Work("a", 1), Work("b", 2), Work("a", 3), Work("c", 4), Work("b", 5)]
    assert [w.item for w in grouped(works)] == [1, 3, 2, 5, 4]
    executor = LocalExecutor(qa="the qa")
    seen = [(o.result, o.error) for o in executor.run(lambda qa, item, shared: (qa, item, shared), works)]
    assert seen == [(("the qa", i, None), None) for i in (1, 3, 2, 5, 4)] and executor.stats.items == 5


def test_whole_documents_go_to_the_least_loaded_worker() -> None:
    works = grouped([Work(k, i) for i, k in enumerate("aaaabbbccd")])
    queues = _assign(works, 2)
    assert [[w.key for _, w in q] for q in queues] == [list("aaaad"), list("bbbcc")]
    assert sorted(no for q in queues for no, _ in q) == list(range(10))  # every item exactly once


def test_unknown_executor_and_bad_worker_counts_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        make_executor("dask", qa=None)
    with pytest.raises(ConfigError, match="--workers must be at least 1"):
        RayExecutor(Config(), workers=0)


def test_missing_ray_is_a_one_line_error() -> None:
    code = ("import sys; sys.modules['ray'] = None\n"  # what `import ray` does when Ray is not installed
            "from chatqa.config import Config\nfrom chatqa.executors import RayExecutor\n"
            "try:\n    RayExecutor(Config())\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ConfigError --executor ray needs Ray: pip install 'chatqa[ray]'"
