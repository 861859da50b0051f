"""FoolsGold: sybils pushing one goal send similar updates over time, so a
client's weight falls with its largest cosine similarity to another
client's history.

Paper: C. Fung, C. J. M. Yoon and I. Beschastnikh, 2020, "The Limitations
of Federated Learning in Sybil Settings", RAID (Algorithm 1, as the
authors' code computes it).  With H_i the sum of client i's updates:

    cs_ij = cos(H_i, H_j) (cs_ii = 0),   v_i = max_j cs_ij
    cs_ij <- cs_ij * v_i / v_j  where v_j > v_i               (pardoning)
    a_i = clip(1 - max_j cs_ij, 0, 1),  a <- a / max a,  a_i = 1 -> confidence
    a_i = clip(kappa * (ln(a_i / (1 - a_i)) + 0.5), 0, 1)

Deviations: a detector does not reweight, so the weight is the score and
rows of weight 0 are dropped; similarities are among this round's kept
clients only (the authors' simulation has every client in every round);
the optional weighting of indicative output-layer features is not
implemented (``layers`` restricts the comparison instead); ``clip_norm``
optionally clips updates before they join the history.

Two clients with the same history are both given weight 0:

>>> history = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
>>> foolsgold_weights(history).numpy().round(3).tolist()
[1.0, 1.0, 0.0, 0.0]
"""

from __future__ import annotations

import attrs
import numpy as np

from fedarena.core.plugin.hookspecs import hookimpl
from fedarena.core.plugin.interfaces import Detector
from fedarena.core.plugin.params import param
from fedarena.plugins import _tf as tf
from fedarena.plugins._tensor import cosine_matrix, on_columns, without_diagonal
from fedarena.plugins.detectors._common import LAYERS_DOC


def foolsgold_weights(histories, kappa=1.0, confidence=0.99):
    """FoolsGold's weight of each client from its history [n, c] (Fung et
    al. 2020, Algorithm 1, as the authors' code computes it)."""
    # Self-similarity zeroed, as in the authors' code (cs - I): the largest
    # similarity is therefore never below 0.
    cs = without_diagonal(cosine_matrix(histories), 0.0)
    top = tf.reduce_max(tf.concat([cs, tf.zeros([tf.shape(cs)[0], 1])], axis=1), axis=1)
    # Pardoning: similarity to a client with a larger maximum shrinks by the ratio.
    ratio = tf.math.divide_no_nan(top[:, None], top[None, :])
    cs = tf.where(top[:, None] < top[None, :], cs * ratio, cs)
    weight = tf.clip_by_value(1.0 - tf.reduce_max(tf.concat([cs, tf.zeros([tf.shape(cs)[0], 1])], axis=1), axis=1),
                              0.0, 1.0)
    weight = tf.math.divide_no_nan(weight, tf.reduce_max(tf.concat([weight, [0.0]], axis=0)))
    weight = tf.where(weight >= 1.0, tf.constant(confidence, weight.dtype), weight)
    logit = kappa * (tf.math.log(weight) - tf.math.log1p(-weight) + 0.5)  # -inf for weight 0
    return tf.clip_by_value(logit, 0.0, 1.0)


@attrs.frozen
class FoolsGold(Detector):
    """FoolsGold (Fung, Yoon & Beschastnikh 2020, "The Limitations of
    Federated Learning in Sybil Settings", RAID): sybils pushing one goal
    send similar updates over time, so each client's weight falls with its
    largest cosine similarity to another client's history.

    History: the sum of every update the client sent while kept (state
    ``history`` [num_clients, d], indexed by client id; rows dropped before
    this detector add nothing).  With ``clip_norm`` > 0 each update is
    clipped to that L2 norm before it is added (the design notes mention
    norm-clipped histories; the authors' code adds raw updates, the default).
    Similarities are computed among the histories of this round's kept
    clients (the authors' simulation has every client in every round), on the
    columns of ``layers``.  The paper's optional weighting of indicative
    output-layer features is not implemented (``layers`` can restrict the
    comparison to the output layer instead).

    Weights, as the authors' code: cs = cosine of histories with the diagonal
    set to 0; v_i = max_j cs_ij; pardoning cs_ij *= v_i / v_j where v_j > v_i;
    a_i = clip(1 - max_j cs_ij, 0, 1); a /= max a; a == 1 becomes
    ``confidence`` (0.99 in the authors' code, so that the logit is finite);
    a_i = clip(kappa * (ln(a_i / (1 - a_i)) + 0.5), 0, 1).

    Deviation: detectors do not reweight, so the weight is the score and
    rows whose weight is 0 are dropped; the aggregator weights the rest as
    it always does.
    """

    paper = "Fung et al. 2020, RAID"

    kappa: float = param(1.0, doc="confidence parameter of the logit (the paper's kappa)", gt=0)
    confidence: float = param(0.99, doc="value the largest rescaled weight takes before the logit", gt=0, lt=1)
    clip_norm: float = param(0.0, doc="L2 norm each update is clipped to before it joins the history; 0: none", ge=0)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def initial_state(self, dim, facts):
        return {"history": np.zeros([facts.num_clients, dim], np.float32)}

    def apply(self, rows, ctx, state):
        x = rows
        if self.clip_norm > 0:
            x = tf.clip_by_norm(x, self.clip_norm, axes=[1])
        clients = ctx.client_ids
        history = tf.tensor_scatter_nd_add(state["history"], clients[:, None], x)
        mine = tf.gather(history, clients)
        columns = ctx.columns(self.layers)
        if columns is not None:
            mine = on_columns(mine, columns)
        weight = foolsgold_weights(mine, self.kappa, self.confidence)
        return rows, weight, weight > 0, dict(state, history=history)


@hookimpl
def fedarena_register_detectors(registry):
    registry.add("foolsgold", FoolsGold)
