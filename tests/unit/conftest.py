import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import finish_all


@pytest.fixture(autouse=True)
def _no_step_threads_outlive_their_test() -> Iterator[None]:
    yield
    finish_all()
