"""A sweep: a grid of training runs (algorithms x seeds x option values) in one directory, with a manifest.

The paper's studies are grids: several credit-assignment schemes, three seeds or more, and for the
sensitivity studies one option at several values (TP-GRPO, Sec. 5: window size, SDE noise level, KL weight).
A sweep expands such a grid into ordinary run directories (:func:`creditzoo.learner.run.train`) and keeps a
manifest that ``creditzoo analyze compare`` and ``robustness`` read. It resumes: finished runs are skipped,
interrupted ones continue from their last checkpoint, and a finished run is never trained again.

Layout of a sweep directory::

    manifest.json        {"runs": [{"name", "dir", "algo", "seed", "config", "status"}, ...],
                          "grid": {field: [values, ...]}, "created": ISO time,
                          "provenance": {git commit, versions, machine, ..., "resumes": [...]}}
    <name>/              one run directory per run (``dir`` in the manifest, relative to the sweep directory)
    logs/<name>.log      output of a run trained in a subprocess (``jobs > 1``) or through submitit
    submitit/            submitit's job files (``launcher="submitit"``)

The package: :mod:`.grid` (the grid and seeds parsed into runs), :mod:`.manifest` (the manifest and a directory
prepared, resumed or refused), :mod:`.launch` (training the runs here, in worker subprocesses or through submitit;
``python -m creditzoo.sweep`` is the worker).
"""

from __future__ import annotations

from creditzoo.sweep.grid import (
    expand,
    grid_field,
    griddable_options,
    parse_grid,
    parse_grid_value,
    parse_seeds,
    run_name,
)
from creditzoo.sweep.launch import LAUNCHERS, LOCKED_EXIT, LaunchOptions, execute, train_run
from creditzoo.sweep.manifest import (
    MANIFEST,
    STATUSES,
    Sweep,
    SweepError,
    SweepRun,
    prepare,
    read_manifest,
    run_status,
    write_manifest,
)

__all__ = [
    "LAUNCHERS",
    "LOCKED_EXIT",
    "MANIFEST",
    "STATUSES",
    "LaunchOptions",
    "Sweep",
    "SweepError",
    "SweepRun",
    "execute",
    "expand",
    "grid_field",
    "griddable_options",
    "parse_grid",
    "parse_grid_value",
    "parse_seeds",
    "prepare",
    "read_manifest",
    "run_status",
    "run_name",
    "train_run",
    "write_manifest",
]
