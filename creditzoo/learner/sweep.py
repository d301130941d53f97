"""The sweep's old module path, kept as an alias of :mod:`creditzoo.sweep` (which holds the code now).

Sweeps started before the move launch their workers as ``python -m creditzoo.learner.sweep SWEEP_DIR RUN_NAME
...`` and their submitit jobs refer to ``creditzoo.learner.sweep.train_run``; both keep working through here.
"""

from creditzoo.sweep import *  # noqa: F403
from creditzoo.sweep import __all__  # noqa: F401
from creditzoo.sweep.launch import main as _main

if __name__ == "__main__":
    _main()
