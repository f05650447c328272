"""The rules that end training: a stall in progress, and divergence.

:class:`StoppingRule` reads one criterion per epoch (greater is better) and
answers whether it improved, whether to cut the learning rate, or whether to
stop, as scikit-learn's MLP counts epochs without improvement
(``_update_no_improvement_count``) and skorch's ``EarlyStopping`` watches a
score. :class:`DivergenceRule` stops a loss that explodes. Neither knows
anything of networks or data: they can be tested on plain numbers.
"""

import math
from dataclasses import dataclass


class TrainingDivergedError(ValueError):
    """Training produced a loss, a validation score or weights that are not finite.

    Raised by ``fit`` and ``partial_fit``, which then leave the estimator as
    it was before the call. The usual causes are input that is not scaled
    (use :class:`~sklearn.preprocessing.StandardScaler` or
    :class:`~sklearn.preprocessing.MinMaxScaler`) and a learning rate that is
    too high (lower ``learning_rate_init``).
    """


#: What :meth:`StoppingRule.update` tells the loop to do after an epoch.
CONTINUE, CUT_LEARNING_RATE, STOP = "continue", "cut learning rate", "stop"


@dataclass(frozen=True)
class Verdict:
    """The answer of :meth:`StoppingRule.update` for one epoch.

    ``improved``: the criterion beat the best so far by more than the
    tolerance (progress). ``best``: it is the best so far, by any margin
    (its weights are the ones to keep). ``action``: :data:`CONTINUE`,
    :data:`CUT_LEARNING_RATE` or :data:`STOP`.
    """

    improved: bool
    best: bool
    action: str


class StoppingRule:
    """Stop once a criterion (greater is better) stops making progress.

    An epoch makes progress when its criterion beats the best so far by more
    than ``tol`` times the best's magnitude: a relative tolerance, the same
    on data of any scale (with ``relative=False``, by more than ``tol``
    itself, for a criterion of fixed scale such as a cross-entropy in nats,
    which a relative rule would follow down towards zero without end). After
    more than ``n_iter_no_change`` epochs without progress the rule asks to
    cut the learning rate, at most ``lr_reductions`` times; the next such
    stall stops training.

    Parameters
    ----------
    tol : float
    n_iter_no_change : int
    relative : bool, default=True
    lr_reductions : int, default=1
    best : float, default=-inf
        The criterion of the starting point, when it is a candidate (a
        validation score of the network before training).
    """

    def __init__(self, tol, n_iter_no_change, *, relative=True, lr_reductions=1,
                 best=-math.inf):
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.relative = relative
        self.lr_reductions = lr_reductions
        self.best = best
        self._no_improvement = 0
        self._reductions = 0

    def update(self, criterion):
        """Record one epoch's ``criterion``; return its :class:`Verdict`."""
        margin = (0.0 if not math.isfinite(self.best)
                  else self.tol * abs(self.best) if self.relative else self.tol)
        improved = criterion > self.best + margin
        best = criterion > self.best
        if best:
            self.best = criterion
        self._no_improvement = 0 if improved else self._no_improvement + 1
        action = CONTINUE
        if self._no_improvement > self.n_iter_no_change:
            if self._reductions < self.lr_reductions:
                self._reductions += 1
                self._no_improvement = 0
                action = CUT_LEARNING_RATE
            else:
                action = STOP
        return Verdict(improved=improved, best=best, action=action)

    def describe(self):
        """What a stop means, for the training message."""
        return (f"did not improve on its best by more than tol={self.tol:g}"
                f"{' of it' if self.relative else ''} for {self.n_iter_no_change} epochs")


@dataclass
class DivergenceRule:
    """Training diverged when an epoch's mean loss explodes.

    The reference is the largest of two scales measured before any step and
    a floor: the loss of the starting network on the first batch (the loss
    is computed before the step); the mean square of that batch's values,
    the error of reconstructing every row as zeros, for a start that
    already fits almost perfectly (an autoencoder set up as PCA on data of
    low rank), where Adam's first steps alone raise the loss many times
    over; and ``floor``, since Adam moves each weight by about the learning
    rate a step whatever the data's scale (on rows of 1e-8 a healthy loss
    grew from 1e-16 to 1e-10). An epoch whose mean loss is more than
    ``factor`` times the reference has diverged: a too-high learning rate
    takes the loss there in the first epoch (1e14 times the data's variance
    at ``learning_rate_init=10`` on the digits), and then keeps training far
    from any useful model even where the loss stays finite.
    """

    factor: float = 1e3
    floor: float = 1.0
    reference: float = math.inf

    def start(self, starting_loss, data_scale):
        self.reference = max(abs(starting_loss), data_scale, self.floor)

    def check(self, loss, epoch):
        """Raise :class:`TrainingDivergedError` if ``loss`` has exploded."""
        if loss > self.factor * self.reference:
            raise TrainingDivergedError(
                f"The training loss reached {loss:.3g} in epoch {epoch}, more than "
                f"{self.factor:g} times its scale when training started ({self.reference:.3g}): "
                "training diverged.")
