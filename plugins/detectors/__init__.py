"""Built-in detectors: anomaly detection on the round's update rows, in TF,
before aggregation; one module per algorithm.

What every detector here shares:

* The server stage hands a detector only the rows still kept, ``[n, d]``
  with ``n >= 1`` (rows dropped earlier, as non-finite or by an earlier
  detector, never reach it), with a context whose per-row fields
  (``client_ids``, ``num_examples``) match those rows; it scatters the
  results back (a row the detector did not see scores NaN) and skips the
  detector when no row is left.
* A detector returns a score per row, recorded in the results file, and
  keeps or drops each row.  None reweights rows: FoolsGold's and CONTRA's
  weights become scores, and rows of weight zero are dropped.  FLAME also
  clips the rows it accepts and adds noise.
* Every detector takes ``layers``: names (substrings) of the layers whose
  columns it looks at; empty means every parameter.
* Updates are deltas (client model minus global model).
* The math of each detector is a pure TF function of tensors, tested on its
  own; the plugin class is a thin adapter.  Everything runs as TF graph ops
  with the number of rows unknown when traced: no NumPy, scikit-learn or
  ``py_function`` inside, no Python loop over rows or coordinates; pairwise
  quantities come from one Gram matrix, and ``tf.while_loop`` runs only the
  iterative parts (Prim's algorithm, k-means).  Shared pieces (median, MAD,
  cosine matrix, 2-means, column restriction, seeds) live in
  ``fedarena.plugins._tensor``.
"""
