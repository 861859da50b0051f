"""Adaptive Federated Averaging (AFA).

Paper: Luis Muñoz-González, Kenneth T. Co and Emil C. Lupu, 2019,
"Byzantine-Robust Federated Machine Learning through Adaptive Model
Averaging", arXiv:1909.05125; the "adaptive averaging" Jere, Farnan and
Koushanfar 2020 cite.

Definition: clients not blocked take part.  Repeat until a pass flags
nobody: the aggregate of the good updates weighted by p_k n_k (p_k the
client's reputation alpha_k / (alpha_k + beta_k) at the start of the round,
n_k its example count); the cosine similarity s_k of each good update to
it; with mean, median and (population) std of the good s_k, flag

    s_k < median - xi std   if mean < median,   else   s_k > median + xi std,

and grow xi by delta_xi.  Then alpha_k += 1 for good clients, beta_k += 1
for flagged ones, and the output is the p_k n_k weighted mean of the good
updates with the updated reputations.  A client is blocked from the next
round on when P(theta < 0.5) > threshold under Beta(alpha_k, beta_k) (the
regularised incomplete beta function).  A row's share is its final
coefficient (0 for flagged and blocked clients).

Deviations: the prior alpha_0 = beta_0 = 3 is our reading of the paper, a
parameter here (``prior``); with every client blocked the aggregate is zero
and the state unchanged.  With ``layers`` the cosine similarities are
measured on those layers' columns; the aggregates cover every coordinate.

The row pointing against the others is flagged (its beta grows):

>>> import numpy as np
>>> rows = np.array([[1., 0.], [1., .1], [1., -.1], [.9, 0.], [1.1, 0.], [-1., 0.]], np.float32)
>>> prior = np.full(6, 3., np.float32)
>>> aggregate, share, good, bad = afa(rows, np.ones(6, np.float32), prior, prior)
>>> bad.numpy().tolist()
[False, False, False, False, False, True]
>>> [round(float(x), 3) for x in aggregate]
[1.0, 0.0]
"""

from __future__ import annotations

import attrs

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Aggregator
from fedarena.core.plugin.params import param
from fedarena.plugins import _tensor
from fedarena.plugins import _tf as tf


def afa(rows, weights, alpha, beta, xi=2.0, delta_xi=0.25, threshold=0.95, columns=None):
    """One round of AFA on ``rows`` ``[n, d]`` with example counts
    ``weights`` ``[n]`` and the Beta reputation parameters ``alpha``,
    ``beta`` ``[n]`` of each row's client; cosines on ``columns`` (None: all)
    -> (aggregate ``[d]``, share ``[n]``, good ``[n]``, flagged ``[n]``: the
    clients whose alpha, respectively beta, grows by one)."""
    rows = tf.convert_to_tensor(rows)
    alpha, beta = tf.convert_to_tensor(alpha, rows.dtype), tf.convert_to_tensor(beta, rows.dtype)
    blocked = tf.math.betainc(alpha, beta, tf.fill(tf.shape(alpha), tf.constant(0.5, alpha.dtype))) > threshold
    taking_part = tf.logical_not(blocked)
    view = _tensor.on_columns(rows, columns)
    # Each row scaled by its own exact power of two (1.0 at ordinary scales):
    # cosines do not change, and no square overflows.
    view = view * _tensor.row_scales(view)[:, None]
    norms = tf.norm(view, axis=1)

    def weighted_mean(good, reputation):
        coeff = tf.where(good, reputation * weights, 0.0)
        coeff = tf.math.divide_no_nan(coeff, tf.reduce_sum(coeff))
        return tf.linalg.matvec(rows, coeff, transpose_a=True), coeff

    def compute():
        reputation = alpha / (alpha + beta)

        def body(passes, good, xi, flagged_any):
            aggregate, _ = weighted_mean(good, reputation)
            centre = _tensor.on_columns(aggregate, columns)
            centre = centre * _tensor.scale_of(centre)
            cosine = tf.math.divide_no_nan(tf.linalg.matvec(view, centre), norms * tf.norm(centre))
            values = tf.boolean_mask(cosine, good)
            mean, median = tf.reduce_mean(values), _tensor.median(values)
            std = tf.math.reduce_std(values)
            bad = good & tf.where(mean < median, cosine < median - xi * std, cosine > median + xi * std)
            return passes + 1, good & tf.logical_not(bad), xi + delta_xi, tf.reduce_any(bad)

        _, good, _, _ = tf.while_loop(
            lambda passes, good, xi, flagged_any: flagged_any & (passes <= tf.size(good)),
            body, (tf.constant(0), taking_part, tf.constant(xi, rows.dtype), tf.constant(True)),
        )
        bad = taking_part & tf.logical_not(good)
        new_alpha = alpha + tf.cast(good, alpha.dtype)
        new_beta = beta + tf.cast(bad, beta.dtype)
        aggregate, share = weighted_mean(good, new_alpha / (new_alpha + new_beta))
        return aggregate, share, good, bad

    def nobody():  # every client blocked
        return (tf.zeros(tf.shape(rows)[1:], rows.dtype), tf.zeros_like(weights), taking_part,
                tf.zeros_like(taking_part))

    aggregate, share, good, bad = tf.cond(tf.reduce_any(taking_part), compute, nobody)
    aggregate.set_shape(rows.shape[1:])
    return aggregate, share, good, bad


@attrs.frozen
class AFA(Aggregator):
    """Adaptive Federated Averaging (Munoz-Gonzalez, Co and Lupu 2019,
    "Byzantine-Robust Federated Machine Learning through Adaptive Model
    Averaging", arXiv:1909.05125); the "adaptive averaging" Jere et al. 2020
    cite.

    Clients not blocked take part.  Repeat until a pass flags nobody: the
    aggregate of the good updates, weighted by p_k n_k (p_k the client's
    reputation alpha/(alpha + beta) at the start of the round, n_k its
    example count); cosine similarity s_k of each good update to it; with
    mean, median and (population) std of the good s_k, flag s_k < median -
    xi * std if mean < median, else s_k > median + xi * std; xi grows by
    delta_xi each pass.  Then alpha += 1 for good clients, beta += 1 for
    flagged ones; the output is the p_k n_k weighted mean of the good
    updates with the updated reputations.  A client is blocked from the
    next round on when P(theta < 0.5) > threshold under Beta(alpha, beta)
    (the regularised incomplete beta function).  State: ``alpha`` and
    ``beta`` per client id, ``[num_clients]``, starting at ``prior`` (our
    reading of the paper's alpha0 = beta0 = 3; a parameter here).  Shares:
    the final coefficients (0 for flagged and blocked clients).  With
    ``layers``, the cosine similarities are measured on those layers'
    parameters; the aggregates cover every parameter.
    """

    paper = "Muñoz-González et al. 2019, arXiv:1909.05125"

    xi: float = param(2.0, doc="initial slack: flagged beyond median +/- xi * std", gt=0)
    delta_xi: float = param(0.25, doc="slack added after each pass", ge=0)
    threshold: float = param(0.95, doc="block a client when P(theta < 0.5) exceeds this", gt=0, lt=1)
    prior: float = param(3.0, doc="alpha and beta of each client's Beta prior", gt=0)
    layers: tuple[str, ...] = param((), doc=_tensor.AGGREGATOR_LAYERS_DOC)

    def initial_state(self, dim, facts):
        import numpy as np

        full = np.full([facts.num_clients], self.prior, np.float32)
        return {"alpha": full, "beta": full.copy()}

    def apply(self, rows, weights, ctx, state):
        alpha_all = tf.convert_to_tensor(state["alpha"], rows.dtype)
        beta_all = tf.convert_to_tensor(state["beta"], rows.dtype)
        ids = tf.cast(ctx.client_ids, tf.int32)
        aggregate, share, good, bad = afa(
            rows, weights, tf.gather(alpha_all, ids), tf.gather(beta_all, ids), self.xi, self.delta_xi,
            self.threshold, _tensor.layer_columns(ctx, self.layers))
        new_state = {
            "alpha": tf.tensor_scatter_nd_add(alpha_all, ids[:, None], tf.cast(good, alpha_all.dtype)),
            "beta": tf.tensor_scatter_nd_add(beta_all, ids[:, None], tf.cast(bad, beta_all.dtype)),
        }
        for key in new_state:
            new_state[key].set_shape(alpha_all.shape)
        return aggregate, share, new_state


@hookimpl
def fedarena_register_aggregators(registry):
    registry.add("afa", AFA)
