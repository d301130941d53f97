import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# transformers binds its log handler to the stderr of whichever test imports it first (a CliRunner call's capture,
# gone afterwards); its import-time notices then print "--- Logging error ---" into a later test's output, so
# which test fails depended on the order. Its warnings are not what these tests check.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
# what pytest and Python write themselves; anything else new in the root was written by a test
TOOL_CACHES = {".pytest_cache", "__pycache__", ".ruff_cache"}


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


@pytest.fixture(scope="session", autouse=True)
def nothing_written_outside_tmp_path() -> Iterator[None]:
    """Fail the session if a test left new files or folders in the repository root or the working directory.

    Tests write under ``tmp_path`` only. A command run with its defaults (``train`` without ``--run-dir``
    writes ``runs/...`` relative to the working directory) would otherwise leave litter that .gitignore hides.
    One directory listing before and one after: cheap, and it names the newcomers, not the test (run the
    suspects one by one, or bisect, to find which).
    """
    watched = {REPO_ROOT, Path.cwd().resolve()}
    before = {folder: set(os.listdir(folder)) for folder in watched}
    yield
    new = sorted(
        str(folder / name) for folder, names in before.items() for name in set(os.listdir(folder)) - names - TOOL_CACHES
    )
    if new:
        pytest.fail(f"tests left new entries outside tmp_path: {', '.join(new)}", pytrace=False)
