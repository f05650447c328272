"""Adam, and the L2 penalty on weights with scikit-learn's meaning, for every skae network.

:class:`Adam` steps with torch's fused kernel where the device has one and a
plain tensor formula elsewhere; :func:`make_optimizer` groups a network's
parameters so that only weights (not biases or normalisation parameters)
carry the penalty.

The penalty is scikit-learn's ``alpha`` (:class:`~sklearn.neural_network.MLPRegressor`):
each step minimises the batch's mean per-row loss plus ``alpha / (2 *
n_batch_rows) * ||W||**2``. Adam applies it as a coupled weight decay on the
gradient of the training loss, which an estimator may compute on another
scale than the per-row loss (a mean over the features instead of a sum): the
estimator gives the penalty on its training loss's scale per row of a batch
(``penalty``, e.g. ``2 * alpha / n_features`` for a mean squared error), and
:meth:`Adam.scale_penalty` divides it by the rows of each batch.
"""

import math

import torch


class Adam:
    """Adam [1]_ with a coupled L2 penalty, as :class:`torch.optim.Adam` computes it.

    skae steps its own optimizer because every method of ``torch.optim``'s
    optimizers imports ``torch._dynamo`` on first use, which costs one to
    several seconds in a fresh process: longer than a whole fit of the digits.
    The update calls torch's fused Adam kernel where the device has one (the
    kernel ``torch.optim.Adam(fused=True)`` runs) and a plain tensor
    implementation of the same formula elsewhere.

    Parameters
    ----------
    param_groups : list of dict
        Each with ``"params"`` and ``"weight_decay"``; other keys are kept.
        A group with a ``"penalty"`` has its ``"weight_decay"`` set by
        :meth:`scale_penalty`.
    lr : float
        Learning rate, stored per group as ``"lr"`` (change it there).
    betas : tuple of float, default=(0.9, 0.999)
    eps : float, default=1e-8

    References
    ----------
    .. [1] D. P. Kingma and J. Ba, "Adam: A method for stochastic
       optimization", ICLR 2015.
    """

    def __init__(self, param_groups, lr, betas=(0.9, 0.999), eps=1e-8):
        self.param_groups = [dict(group, lr=lr, params=list(group["params"]))
                             for group in param_groups]
        self.betas = betas
        self.eps = eps
        # Per group: step counts (one float32 vector, one entry a parameter),
        # first and second moments; built on the first step.
        self._moments = [None] * len(self.param_groups)
        self._plan = self._plan_key = None
        device = self.param_groups[0]["params"][0].device if self.param_groups else None
        self._fused = (hasattr(torch, "_fused_adam_") and device is not None
                       and device.type in ("cpu", "cuda", "mps"))

    def scale_penalty(self, n_rows):
        """Set the weight decay of the penalised groups for a batch of ``n_rows``
        rows: ``penalty / n_rows``, scikit-learn's ``alpha / n_batch_rows``
        on the training loss's scale."""
        for group in self.param_groups:
            if "penalty" in group:
                group["weight_decay"] = group["penalty"] / n_rows

    def zero_grad(self):
        for group in self.param_groups:
            for parameter in group["params"]:
                parameter.grad = None

    def _init_moments(self, params):
        return (
            torch.zeros(len(params), dtype=torch.float32, device=params[0].device),
            [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
            [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
        )

    def _make_plan(self, active):
        """Kernel calls for this step: one per distinct (lr, weight_decay).

        Each call costs microseconds, about as much as the whole update of a
        small network, so groups with equal hyper-parameters (e.g. weights and
        biases when alpha=0) share one. ``active[i]`` lists the indices of the
        parameters of group ``i`` that have a gradient.
        """
        calls = {}
        for index, group in enumerate(self.param_groups):
            if not active[index]:
                continue
            if self._moments[index] is None:
                self._moments[index] = self._init_moments(group["params"])
            step_counts, exp_avgs, exp_avg_sqs = self._moments[index]
            # 0-d views into the group's step vector: the fused kernel reads
            # one tensor a parameter, and one add_ advances them all.
            steps = step_counts.unbind()
            call = calls.setdefault((group["lr"], group["weight_decay"]), ([], [], [], []))
            for i in active[index]:
                call[0].append(group["params"][i])
                call[1].append(exp_avgs[i])
                call[2].append(exp_avg_sqs[i])
                call[3].append(steps[i])
        return list(calls.items())

    @torch.no_grad()
    def step(self):
        groups = self.param_groups
        everything = all(p.grad is not None for group in groups for p in group["params"])
        key = tuple((group["lr"], group["weight_decay"]) for group in groups)
        if everything and self._plan_key == key:
            plan = self._plan
        else:
            # Parameters that took no part in the loss are not moved and their
            # step counts do not advance (as in torch.optim).
            active = [[i for i, p in enumerate(group["params"]) if p.grad is not None]
                      for group in groups]
            plan = self._make_plan(active)
            self._plan, self._plan_key = (plan, key) if everything else (None, None)
        if everything:
            for step_counts, _, _ in self._moments:
                step_counts.add_(1)
        else:
            for _, (_, _, _, steps) in plan:
                for step in steps:
                    step.add_(1)
        beta1, beta2 = self.betas
        for (lr, weight_decay), (params, exp_avgs, exp_avg_sqs, steps) in plan:
            grads = [p.grad for p in params]
            if self._fused:
                try:
                    torch._fused_adam_(
                        params, grads, exp_avgs, exp_avg_sqs, [], steps,
                        lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                        eps=self.eps, amsgrad=False, maximize=False,
                    )
                    continue
                except Exception:  # noqa: BLE001 - any failure of a private op
                    # No fused kernel for this device or torch build (older
                    # releases, MPS), or a changed private signature: the op
                    # checks its arguments before it writes anything, so the
                    # plain formula can take this step and every later one.
                    self._fused = False
            self._reference_step(params, grads, exp_avgs, exp_avg_sqs, steps, lr, weight_decay)

    def _reference_step(self, params, grads, exp_avgs, exp_avg_sqs, steps, lr, weight_decay):
        beta1, beta2 = self.betas
        for param, grad, exp_avg, exp_avg_sq, step in zip(
                params, grads, exp_avgs, exp_avg_sqs, steps):
            if weight_decay:
                grad = grad.add(param, alpha=weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            count = float(step)
            bias_correction1 = 1 - beta1 ** count
            bias_correction2 = 1 - beta2 ** count
            denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)

    def state_dict(self):
        """Hyper-parameters and moments (tensors on their device, not copied)."""
        return {
            "param_groups": [{k: v for k, v in group.items() if k != "params"}
                             for group in self.param_groups],
            "moments": [None if moments is None
                        else (moments[0].detach(), *[[t.detach() for t in seq]
                                                     for seq in moments[1:]])
                        for moments in self._moments],
        }

    def load_state_dict(self, state):
        for group, saved in zip(self.param_groups, state["param_groups"]):
            group.update(saved)
        self._moments = []
        for group, moments in zip(self.param_groups, state["moments"]):
            if moments is None:
                self._moments.append(None)
                continue
            device = group["params"][0].device
            step_counts, exp_avgs, exp_avg_sqs = moments
            self._moments.append((
                step_counts.to(device, dtype=torch.float32, copy=True),
                [t.to(device, copy=True) for t in exp_avgs],
                [t.to(device, copy=True) for t in exp_avg_sqs],
            ))
        self._plan = self._plan_key = None


def make_optimizer(module, learning_rate, penalty):
    """:class:`Adam` over the trainable parameters, with an L2 penalty on weights
    (not on biases or normalisation parameters).

    ``penalty`` is the penalty on the training loss's scale, per row of a
    batch: the weight decay of a batch of ``n`` rows is ``penalty / n``
    (:meth:`Adam.scale_penalty`; until it is called, ``penalty`` itself).
    """
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim > 1 and name.endswith("weight") else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": penalty, "penalty": penalty, "decayed": True},
              {"params": no_decay, "weight_decay": 0.0, "decayed": False}]
    return Adam([group for group in groups if group["params"]], lr=learning_rate)
