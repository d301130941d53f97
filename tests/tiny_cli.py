"""``creditzoo`` with the tiny test task registered, for tests that launch the command line in new processes."""

from creditzoo.cli import main
from creditzoo.tasks import TASKS

TASKS["tiny"] = "tiny_model:TASK"

if __name__ == "__main__":
    main()
