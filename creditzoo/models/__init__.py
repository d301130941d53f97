"""Flow-matching model backends behind one small interface (:class:`creditzoo.models.base.FlowModel`).

Only the modules in this package know a model's internals; heavy imports happen inside them, lazily.
"""

from creditzoo.models.base import Conditioning, FlowModel, select_conditioning

__all__ = ["Conditioning", "FlowModel", "select_conditioning"]
