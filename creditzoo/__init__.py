"""creditzoo: interchangeable credit-assignment schemes for GRPO fine-tuning of flow-matching text-to-image models.

Importing the package registers every task's gymnasium id (``creditzoo/GenEval-v0``, ...), so that
``import creditzoo`` is enough before ``gymnasium.make`` / ``gymnasium.make_vec``. Registration uses string entry
points: it imports torch, gymnasium and the task table, but no model, reward backend, diffusers or transformers.
"""

from creditzoo.envs import register_envs as _register_envs

_register_envs()
