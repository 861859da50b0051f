"""Built-in aggregators, one module per rule: ``krum.py`` holds the paper,
the pure tensor function ``krum(rows, f) -> (aggregate, share)``, the
``Krum`` plugin class and its registration.  Shared math lives in
`fedarena.plugins._tensor`.

Conventions shared by every rule (our reading of the papers; where practice
differs the variant is a named parameter, and the rule's docstring says which
is the paper's):

- A rule sees only the kept rows ``[n, d]``, ``n >= 1`` (known only when the
  graph runs), their example counts (all > 0) and a context whose per-row
  fields (client ids, example counts) match those rows.  The server stage
  drops the other rows before, answers the no-row case itself (a zero
  aggregate, zero shares, the state kept) and scatters the shares back.
- Example counts enter a rule only where its paper weights by them
  (FedAvg, the geometric median's alpha_i, norm clipping's mean, AFA's
  p_k n_k); the other robust rules are unweighted, as published.
- All pairwise distances come from one Gram matrix of the rows, centred on
  a medoid first (distances do not change; the float32 cancellation in
  ||a||^2 + ||b||^2 - 2 a.b does), clipped at zero.  There are no Python
  loops over rows or coordinates; ``tf.while_loop`` runs only the iterative
  parts of an algorithm.
- Randomised rules (DnC, SignGuard, bucketing, norm clipping's noise) draw
  from the round's stateless seed folded with a salt of their own (a
  module constant ``SALT...``; a test checks that no two are equal), so a
  run is reproducible and they never share random numbers.
- ``check`` tests a rule against ``clients_per_round``.  Detectors may drop
  rows later, so at run time each size that depends on ``n`` is clamped to
  what the rows left allow (documented per rule) instead of failing a run.
- ``share`` is each row's coefficient in the aggregate when the aggregate is
  a combination of rows, ``1/n`` per used row for coordinate-wise rules.
- State: a rule that keeps state across rounds declares it in
  ``initial_state`` and overrides ``apply(rows, weights, ctx, state) ->
  (aggregate, share, state)``; a stateless rule implements only
  ``aggregate(rows, weights, ctx) -> (aggregate, share)``.
- ``layers`` (names, or substrings of names, of model layers; empty: all):
  the rules that choose or weight rows by distances or similarities compute
  those on the columns of the named layers only, e.g. to leave batch-norm
  statistics out; the aggregate still covers every parameter.  Krum and
  Multi-Krum: the pairwise distances; Bulyan: the distances of its Krum
  selection (its coordinate-wise step is unchanged); DnC: the coordinates
  it subsamples; SignGuard: the norm filter and the sign statistics (the
  clipping of the accepted updates uses whole norms); AFA: the cosine
  similarities to the aggregate; FLTrust: the cosine trust (the rescaling
  to the root update's norm uses whole norms).  There is no ``layers`` for
  the coordinate-wise rules (FedAvg, median, trimmed mean), which never
  compare rows, nor for the rules whose norms scale whole updates (norm
  clipping, centered clipping, the geometric median's Weiszfeld weights):
  a norm measured on some layers would leave the others unbounded.
  Bucketing passes the model's layers to its inner rule, which takes its
  own ``layers``.

Adding a rule is three new files and no edited ones: ``<name>.py`` here
(found by walking the package, registered by its own ``@hookimpl``), its
test under ``tests/plugins/aggregators/`` and a scenario using it.
"""
