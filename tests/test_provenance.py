"""Provenance: the commit, versions and machine a run records, and how a resume appends to them."""

import subprocess
from pathlib import Path

import pytest
import torch

from creditzoo import provenance


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git repository holding a ``creditzoo/`` package folder, one commit."""
    root = tmp_path / "repo"
    (root / "creditzoo").mkdir(parents=True)
    (root / "creditzoo" / "module.py").write_text("x = 1\n")
    (root / "README.md").write_text("readme\n")
    git(root.parent, "init", "-q", str(root))
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    return root


def test_git_state_names_the_commit_and_flips_dirty_on_a_package_change(checkout: Path) -> None:
    head = git(checkout, "rev-parse", "HEAD")
    assert provenance.git_state(checkout) == (head, False)
    (checkout / "README.md").write_text("edited\n")  # outside the package: not the code that runs
    assert provenance.git_state(checkout) == (head, False)
    (checkout / "creditzoo" / "module.py").write_text("x = 2\n")
    assert provenance.git_state(checkout) == (head, True)
    git(checkout, "checkout", "-q", "--", "creditzoo")
    assert provenance.git_state(checkout) == (head, False)
    (checkout / "creditzoo" / "new.py").write_text("y = 1\n")  # a new module counts too
    assert provenance.git_state(checkout) == (head, True)


def test_git_state_is_none_outside_a_checkout_or_inside_another_repository(tmp_path: Path, checkout: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert provenance.git_state(plain) == (None, None)
    nested = checkout / "venv" / "site-packages"  # an installed package inside some project's repository
    nested.mkdir(parents=True)
    assert provenance.git_state(nested) == (None, None)


def test_collect_fields_and_types() -> None:
    record = provenance.collect(torch.device("cpu"))
    assert set(record) == {
        "git_commit", "git_dirty", "creditzoo", "torch", "diffusers", "python", "torch_threads", "device",
        "device_name", "cpu_model", "hostname", "started_utc",
    }  # fmt: skip
    assert record["git_commit"] is None or len(record["git_commit"]) == 40
    assert record["git_dirty"] in (None, True, False)
    assert record["torch"] == torch.__version__ and record["torch_threads"] == torch.get_num_threads()
    assert record["device"] == "cpu" and record["device_name"] is None
    assert isinstance(record["creditzoo"], str) and isinstance(record["hostname"], str)
    assert record["started_utc"].endswith("+00:00")
    assert record["cpu_model"] is None or isinstance(record["cpu_model"], str)


def test_a_resume_keeps_the_original_and_appends() -> None:
    first = {"git_commit": "a" * 40, "torch": "1", "resumes": []}
    second, third = {"git_commit": "b" * 40, "torch": "2"}, {"git_commit": "c" * 40, "torch": "3"}
    kept = provenance.with_resume(provenance.with_resume(first, second), third)
    assert kept["git_commit"] == "a" * 40 and kept["resumes"] == [second, third]
    unknown = provenance.with_resume(None, second)  # a run made before provenance was recorded
    assert unknown == {"git_commit": None, "torch": None, "resumes": [second]}
