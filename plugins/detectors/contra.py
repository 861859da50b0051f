"""CONTRA: colluding poisoners send similar updates, so a client whose
updates resemble the others' too much loses reputation, and clients of low
reputation are dropped.

Paper: S. Awan, B. Luo and F. Li, 2021, "CONTRA: Defending against
Poisoning Attacks in Federated Learning", ESORICS.  Each round, for the kept
updates u_i of clients c_i:

    s_i = mean of the k largest cos(u_i, u_j), j != i
    r_{c_i} <- clip(r_{c_i} - delta, 0, 1)  if s_i > threshold
               clip(r_{c_i} + delta, 0, 1)  otherwise
    keep row i  iff  r_{c_i} >= min_reputation

Deviations (the official code and reimplementations disagree; see
`Contra`): similarities between this round's updates, plain cosine, k
capped at the other rows; reputation starts at 1 and stays in [0, 1];
the FoolsGold-style weights and the reputation-driven client selection are
not applied.

>>> x = tf.constant([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
>>> top_k_mean_similarity(x, 2).numpy().round(3).tolist()
[0.5, 0.5, 0.0, -0.5]
>>> contra_reputation(x, tf.ones([4]), k=1, delta=0.1, threshold=0.5).numpy().astype(float).round(3).tolist()
[0.9, 0.9, 1.0, 1.0]
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


def top_k_mean_similarity(x, k):
    """Mean of each row's k largest cosine similarities to the other rows
    (k capped at n - 1; 0 for a row with no other row)."""
    cs = without_diagonal(cosine_matrix(x), -np.inf)
    count = tf.minimum(k, tf.shape(cs)[0] - 1)
    top = tf.math.top_k(cs, k=tf.maximum(count, 0)).values
    return tf.math.divide_no_nan(tf.reduce_sum(top, axis=1), tf.cast(count, cs.dtype))


def contra_reputation(x, reputation, k, delta, threshold):
    """The reputation [n] of the clients of the rows ``x`` [n, c] after this
    round: ``reputation`` (theirs before) lowered by ``delta`` where a row's
    mean top-k cosine similarity exceeds ``threshold``, raised otherwise,
    kept in [0, 1]."""
    similar = top_k_mean_similarity(x, k)
    step = tf.where(similar > threshold, -delta, delta)
    return tf.clip_by_value(reputation + step, 0.0, 1.0)


@attrs.frozen
class Contra(Detector):
    """CONTRA (Awan, Luo & Li 2021, "CONTRA: Defending against Poisoning
    Attacks in Federated Learning", ESORICS): colluding poisoners send
    similar updates, so a client whose mean top-k cosine similarity to the
    other clients of the round exceeds ``threshold`` loses ``delta``
    reputation, any other gains ``delta``; clients of low reputation are
    dropped.

    The official code and reimplementations disagree; the choices here:
    similarities are between this round's kept updates (not histories), on
    the columns of ``layers``, plain cosine (not its absolute value); k is
    capped at the number of other kept rows; a similarity above the
    threshold LOWERS the reputation (as the paper argues; at least one
    public reimplementation raises it); reputation (state ``reputation``
    [num_clients]) starts at 1 and stays in [0, 1], so a long honest past
    does not shield a client that turns; a row is dropped when its client's
    reputation, updated this round, is below ``min_reputation`` (with a 1e-6
    tolerance for float rounding: from 1, delta 0.1 and 1/2, the sixth net
    step down drops).  CONTRA's
    FoolsGold-style learning-rate weights and its reputation-driven client
    selection are not applied (detectors neither reweight nor sample; chain
    ``foolsgold`` for the weights).  Score: the updated reputation.
    """

    paper = "Awan et al. 2021, ESORICS"

    k: int = param(2, doc="number of most similar other clients averaged (the expected number of colluders)", ge=1)
    delta: float = param(0.1, doc="reputation lost or gained per round", gt=0, le=1)
    threshold: float = param(0.5, doc="mean top-k cosine similarity above which reputation drops", ge=-1, le=1)
    min_reputation: float = param(0.5, doc="rows whose client's reputation is below this are dropped", ge=0, le=1)
    layers: tuple[str, ...] = param((), doc=LAYERS_DOC)

    def initial_state(self, dim, facts):
        return {"reputation": np.ones([facts.num_clients], np.float32)}

    def apply(self, rows, ctx, state):
        clients = ctx.client_ids
        x = on_columns(rows, ctx.columns(self.layers))
        reputation = contra_reputation(x, tf.gather(state["reputation"], clients), self.k, self.delta,
                                       self.threshold)
        table = tf.tensor_scatter_nd_update(state["reputation"], clients[:, None], reputation)
        # The tolerance absorbs float32 rounding of repeated +/- delta steps.
        keep = reputation >= self.min_reputation - 1e-6
        return rows, reputation, keep, dict(state, reputation=table)


@hookimpl
def fedarena_register_detectors(registry):
    registry.add("contra", Contra)
