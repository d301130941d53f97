"""Registers the tiny test task; sweep workers in subprocesses import it (``LaunchOptions.imports``)."""

from creditzoo.tasks import TASKS

TASKS["tiny"] = "tiny_model:TASK"
