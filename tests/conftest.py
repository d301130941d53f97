import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# transformers binds its log handler to the stderr of whichever test imports it first (a CliRunner call's capture,
# gone afterwards); its import-time notices then print "--- Logging error ---" into a later test's output, so
# which test fails depended on the order. Its warnings are not what these tests check.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

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
