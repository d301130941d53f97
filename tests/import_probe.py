"""Which modules an import pulls in, seen from a fresh interpreter (the test process has imported everything)."""

import subprocess
import sys


def loaded_by(imports: str, watched: tuple[str, ...], timeout: float) -> list[str]:
    """The modules of ``watched`` present in ``sys.modules`` after ``import <imports>`` in a new Python process.

    Raises:
        AssertionError: when the import itself fails (with its stderr).
    """
    code = f"import sys, {imports}; print(','.join(m for m in {watched!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return [name for name in done.stdout.strip().split(",") if name]
