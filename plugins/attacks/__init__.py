"""Built-in attacks; one module per algorithm.

Data poisoning (``poisons_data``) changes a malicious client's training
samples inside its TFF client computation: ``label_flip``, ``backdoor``
(with a trigger plugin of ``fedarena.plugins.triggers``: BadNets pixel
patch, blended pattern, DBA distributed patch), ``neurotoxin`` and
``edge_case``.

Model poisoning (``poisons_updates``) rewrites the attack's own rows of the
round's ``[K, d]`` update matrix at the server stage, where ``K`` is not
known statically; all of it is matrix code (``tf.while_loop`` only for the
one-dimensional searches of Fang-Krum, Min-Max and Min-Sum).  Conventions
shared by every attack here:

* Updates are deltas (client model minus global model).
* An attack sees the whole ``[K, d]`` matrix: ``own`` marks its rows,
  ``benign`` the rows an omniscient attacker may read (rows of other attack
  groups are neither).
* ``knowledge`` picks the reference updates an attack reads:
  ``"omniscient"`` the round's benign rows (the ``benign`` mask);
  ``"partial"`` this attack's own rows *before* the attack (malicious
  clients train normally on their data, so those rows are honest-looking
  updates, which is Fang et al.'s partial-knowledge setting).
* Every attacker of a group sends the same crafted row unless the attack
  is randomised (Gaussian, Fang-Trim) or acts row by row (sign flip,
  scaling, boosting).
* Rows outside ``own`` are never changed; when a group has no row in a
  round nothing is computed (``tf.cond``).
* Random draws come from stateless seeds: the client's seed for data
  poisoning, the round's seed (with a salt per attack) at the server.

Each module holds the pure tensor function of its attack (tested on its
own) and a thin plugin class; pieces shared by several attacks live in
``fedarena.plugins._tensor`` (statistics, distances, seeds) and
``fedarena.plugins.attacks._common`` (knowledge, the update-attack base).
"""
