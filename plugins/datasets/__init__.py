"""Built-in datasets, one module each.

Every module names its source dataset, the paper to cite and the
preprocessing applied, and registers its dataset through its own
``fedarena_register_datasets`` hook.  The private modules hold what several
datasets share: ``_common`` (reading local files, checksums, safe
unpickling, decoding and scaling images, the held-out test set),
``_download`` (the standard loaders' caches, the check that a dataset is on
this machine, and ``fedarena data fetch``), ``_idx`` (the MNIST file
format) and ``_writers`` (datasets whose samples have writers, for the
``natural`` split).

Images are float32 in [0, 1] with their channel axis, (28, 28, 1),
(32, 32, 3) or (64, 64, 3); Shakespeare's inputs are 80 character ids as
float32; labels are int32.
"""
