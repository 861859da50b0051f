"""Built-in client optimizers (TFF's functional optimizers)."""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Optimizer
from fedarena.core.plugin.params import param


@attrs.frozen
class SGD(Optimizer):
    """Stochastic gradient descent with optional heavy-ball momentum."""

    paper = "none (standard optimizer)"

    learning_rate: float = param(0.1, doc="step size", gt=0)
    momentum: float = param(0.0, doc="momentum coefficient (0 for plain SGD)", ge=0, lt=1)

    def build(self):
        import tensorflow_federated as tff

        momentum = self.momentum if self.momentum > 0 else None
        return tff.learning.optimizers.build_sgdm(learning_rate=self.learning_rate, momentum=momentum)


@attrs.frozen
class Adam(Optimizer):
    """Adam (Kingma and Ba 2015)."""

    paper = "Kingma and Ba 2015, ICLR"

    learning_rate: float = param(0.001, doc="step size", gt=0)
    beta_1: float = param(0.9, doc="decay of the first-moment estimate", ge=0, lt=1)
    beta_2: float = param(0.999, doc="decay of the second-moment estimate", ge=0, lt=1)
    epsilon: float = param(1e-7, doc="numerical stability constant", gt=0)

    def build(self):
        import tensorflow_federated as tff

        return tff.learning.optimizers.build_adam(
            learning_rate=self.learning_rate, beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon
        )


@hookimpl
def fedarena_register_optimizers(registry):
    registry.add("sgd", SGD)
    registry.add("adam", Adam)
