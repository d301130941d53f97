import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def tiny_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the tiny test task (``tiny_model.TASK``) as env "tiny" for the test's duration."""
    from creditzoo.tasks import TASKS

    monkeypatch.setitem(TASKS, "tiny", "tiny_model:TASK")
