"""The results file, described once: every group, dataset and attribute
name, and the status values.  The writer writes these names, the reader
(`fedarena.core.results.reader`) reads them, and docs/results.md lists them
(a test checks that it lists exactly these).

A results file holds either one run at its root, or a sweep: root attribute
``kind = "sweep"``, an index of the points and one run per group under
``/runs``, each with exactly a single run's layout.

Every name is given with its meaning as a `Field`; the constants beside
them are what the code uses, so a misspelt name is an ``AttributeError``,
not a silently missing dataset.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Field:
    """One name in the file and what it holds."""

    name: str
    meaning: str


def _names(fields: tuple[Field, ...]) -> tuple[str, ...]:
    return tuple(f.name for f in fields)


# --------------------------------------------------------------------------
# Status values.

RUNNING, COMPLETE, INTERRUPTED, FAILED = "running", "complete", "interrupted", "failed"
PENDING = "pending"
STATUSES = (RUNNING, COMPLETE, INTERRUPTED, FAILED)
"""A run's ``status`` attribute: ``running`` while it goes on, and after a
crash (even SIGKILL); the others once it ends."""
POINT_STATUSES = (PENDING, RUNNING, COMPLETE, FAILED, INTERRUPTED)
"""A sweep point's entry in ``/index/status``."""

# --------------------------------------------------------------------------
# A run: root attributes (of the file, or of its group in a sweep).

FEDARENA_VERSION = "fedarena_version"
SCENARIO = "scenario"
SCENARIO_SHA256 = "scenario_sha256"
SCENARIO_FILE = "scenario_file"
TITLE = "title"
SEED = "seed"
STATUS = "status"
ROUNDS_PLANNED = "rounds_planned"
ROUNDS_DONE = "rounds_done"
STARTED_AT = "started_at"
FINISHED_AT = "finished_at"
RESUMED_AT = "resumed_at"
WORKERS = "workers"
BACKEND = "backend"
ERROR = "error"

RUN_ATTRIBUTES = (
    Field(FEDARENA_VERSION, "version of fedarena that wrote the file"),
    Field(SCENARIO, "the scenario's source text, verbatim"),
    Field(SCENARIO_SHA256, "SHA-256 of that text"),
    Field(SCENARIO_FILE, "the path the scenario was read from"),
    Field(TITLE, "the scenario's title"),
    Field(SEED, "the scenario seed"),
    Field(STATUS, "`running`, `complete`, `interrupted` or `failed`"),
    Field(ROUNDS_PLANNED, "rounds in the scenario"),
    Field(ROUNDS_DONE, "rounds completed and written"),
    Field(STARTED_AT, "UTC time (ISO 8601) the run started"),
    Field(FINISHED_AT, "UTC time (ISO 8601) the run ended"),
    Field(RESUMED_AT, "UTC time (ISO 8601) of the last `--resume` (only when resumed)"),
    Field(WORKERS, "the TFF workers given with `--workers`, or `local`"),
    Field(BACKEND, "what ran client training and the server stage: `local` (fedarena's in-process executor), "
                   "`worker` (TFF's C++ worker) or `remote` (the workers given with `--workers`)"),
    Field(ERROR, "why the run failed or stopped (only when it did)"),
)
LOCAL_WORKERS = "local"
"""``workers`` when the run used its own local TFF worker."""

# --------------------------------------------------------------------------
# A run's groups.

METRICS = "metrics"
CLIENTS = "clients"
TIMING = "timing"
DETECTION = "detection"
SPLIT = "split"
MODEL = "model"
CHECKPOINT = "checkpoint"
CHECKPOINT_STATE = "checkpoint/state"
PLUGINS = "plugins"
VERSIONS = "versions"

PER_ROUND_GROUPS = (CLIENTS, TIMING, DETECTION)
"""Groups with one entry per completed round (first axis); `METRICS` has
one per evaluated round."""
RUN_GROUPS = (METRICS, CLIENTS, TIMING, DETECTION, SPLIT, MODEL, CHECKPOINT, PLUGINS, VERSIONS)
"""Every run has these; a run started from a file also has `START`."""

ROUND = "round"
"""The round number, a dataset of `METRICS`, `TIMING` and `DETECTION`."""

# /metrics: one 1-D dataset per metric, one entry per evaluated round.
TEST_ACCURACY = "test_accuracy"
TEST_LOSS = "test_loss"
DETECTION_PRECISION = "detection_precision"
DETECTION_RECALL = "detection_recall"
TEST_METRICS = (TEST_ACCURACY, TEST_LOSS)
DETECTION_METRICS = (DETECTION_PRECISION, DETECTION_RECALL)
METRIC_FIELDS = (
    Field(ROUND, "the round (1-based) after which the model was evaluated"),
    Field(TEST_ACCURACY, "accuracy on the held-out test set"),
    Field(TEST_LOSS, "mean cross-entropy on the held-out test set"),
    Field(DETECTION_PRECISION, "share of the dropped updates that were malicious, over all rounds so far "
                               "(NaN when undefined)"),
    Field(DETECTION_RECALL, "share of the malicious updates that were dropped, over all rounds so far "
                            "(NaN when undefined)"),
)
"""Besides these, attacks add ``<attack group>_<metric>``."""

# /clients: 2-D datasets [round, slot]; row i is round i + 1.
CLIENT_ID = "id"
MALICIOUS = "malicious"
ATTACK_GROUP = "attack_group"
UPDATE_NORM = "update_norm"
AGGREGATION_WEIGHT = "aggregation_weight"
NUM_EXAMPLES = "num_examples"
TRAIN_LOSS = "train_loss"
FINITE = "finite"
KEPT = "kept"
DETECTOR_SCORES = "detector_scores"
CLIENT_FIELDS = (
    Field(CLIENT_ID, "client id (0 .. clients - 1)"),
    Field(MALICIOUS, "the client attacked in this round"),
    Field(ATTACK_GROUP, "index of its attack block (`/split` attribute `attack_groups`), -1 if it did not attack"),
    Field(UPDATE_NORM, "L2 norm of the update it sent (after any model poisoning)"),
    Field(AGGREGATION_WEIGHT, "its share in the aggregate"),
    Field(NUM_EXAMPLES, "its number of training examples"),
    Field(TRAIN_LOSS, "its mean local training loss"),
    Field(FINITE, "its update had no NaN or Inf (non-finite updates are dropped)"),
    Field(KEPT, "its update reached the aggregator (not dropped)"),
    Field(DETECTOR_SCORES, "`[round, slot, detector]` score of each detector"),
)

# /timing: one entry per round.
SECONDS_SUFFIX = "_seconds"
TIMING_FIELDS = (
    Field(ROUND, "the round number"),
    Field("client_seconds", "client work: local training, gathering the updates at the server, and the transfers"),
    Field("attack_seconds", "model poisoning at the server stage (timed inside the TFF computation)"),
    Field("detection_seconds", "detectors, including dropping non-finite updates"),
    Field("aggregation_seconds", "the aggregator and the server step"),
    Field("evaluation_seconds", "test-set evaluation and attack metrics (0 when not evaluated)"),
)
"""Each ``<stage>_seconds``: the stage's wall time that round."""

# /detection: one entry per round, the updates dropped that round.
TRUE_POSITIVES = "true_positives"
FALSE_POSITIVES = "false_positives"
TRUE_NEGATIVES = "true_negatives"
FALSE_NEGATIVES = "false_negatives"
DETECTION_FIELDS = (
    Field(ROUND, "the round number"),
    Field(TRUE_POSITIVES, "malicious updates dropped"),
    Field(FALSE_POSITIVES, "benign updates dropped"),
    Field(TRUE_NEGATIVES, "benign updates kept"),
    Field(FALSE_NEGATIVES, "malicious updates kept"),
)

# /split: the clients' data, fixed for the run.
CLASS_HISTOGRAM = "class_histogram"
SPLIT_FIELDS = (
    Field(CLASS_HISTOGRAM, "`[client, class]` training samples of each class per client"),
    Field(NUM_EXAMPLES, "`[client]` training samples per client"),
    Field(ATTACK_GROUP, "`[client]` attack block each client belongs to, -1 for benign"),
)
ATTACK_GROUPS = "attack_groups"
"""Attribute of `SPLIT`: the names of the attack blocks, in order."""

# /model and /checkpoint: what `fedarena run --resume` continues from.
MODEL_WEIGHTS = "model/weights"
MODEL_ROUND = "round"
"""Attribute of `MODEL`: the round after which ``weights`` was taken."""
MODEL_INPUT_SHAPE = "input_shape"
MODEL_NUM_CLASSES = "num_classes"
MODEL_SAVE_EVERY = "save_every"
MODEL_ATTRIBUTES = (
    Field(MODEL_ROUND, "the round after which `weights` was taken"),
    Field(MODEL_SAVE_EVERY, "K of `save model every K rounds` (0: only the latest model is kept)"),
    Field(MODEL_INPUT_SHAPE, "the shape of one input the model takes (the dataset's)"),
    Field(MODEL_NUM_CLASSES, "the number of classes it predicts"),
)
"""Attributes of `MODEL`; ``start from`` compares the last two (and the
model plugin's ``parameters``) with the scenario's."""
SAVED = "model/saved"
SAVED_WEIGHTS = f"{SAVED}/weights"
SAVED_ROUND = f"{SAVED}/round"
SAVED_FIELDS = (
    Field(SAVED_WEIGHTS, "`[saved, d]` the global model after each of the rounds in `round`"),
    Field(SAVED_ROUND, "`[saved]` rounds K, 2K, ... up to `rounds_done`"),
)
"""With ``save model every K rounds``: the models kept besides the latest."""

# /start: where the run's model started from (only with `start from`).
START = "start"
START_PATH = "path"
START_LOCATION = "absolute_path"
START_KIND = "kind"
START_ROUND = "round"
START_SHA256 = "sha256"
START_ATTRIBUTES = (
    Field(START_PATH, "the file as the scenario names it"),
    Field(START_LOCATION, "the file's absolute path, as read"),
    Field(START_KIND, "`results` (a fedarena results file) or `npz`"),
    Field(START_ROUND, "the round whose model was taken from a results file (0 for an .npz)"),
    Field(START_SHA256, "SHA-256 of the file's bytes when the run started"),
)


CHECKPOINT_NEXT = "checkpoint/next"
"""The round being committed, whole: its rows of `CLIENTS`, `TIMING`,
`DETECTION` (and `METRICS` when evaluated) under groups of those names,
``weights`` and ``state/<key>/<name>``.  Written and flushed before any of
it is copied into place, so that a crash mid-commit is finished from it
(`fedarena.core.results.writer.recover`); removed when the run ends."""
NEXT_ROUND = "round"
"""Attribute of `CHECKPOINT_NEXT`: the round it holds once it is complete
on disk, 0 while it is being written or once it has been copied."""
NEXT_WEIGHTS = "weights"
NEXT_STATE = "state"


CLIENT_STATE = "clients"
"""The state key (`state_path`) of what the run itself keeps per client
across rounds, beside the plugins' state."""
LOCAL_NORM = "local_norm"
"""Under `CLIENT_STATE`, ``[client, k]`` float32: with a model that keeps
its normalization layers on the clients (FedBN, ``norm_state = "local"``),
every client's own values of them, in the order of their coordinates in
the flat model vector (the global model's values there stay the initial
ones)."""


def state_path(key: str, name: str) -> str:
    """Where a stateful plugin's array ``name`` is kept (``key``: its role's state key)."""
    return f"{CHECKPOINT_STATE}/{key}/{name}"


# /plugins: one group per plugin the run used, named after its role.
PLUGIN_ROLE = "role"
PLUGIN_NAME = "name"
PLUGIN_LABEL = "label"
PLUGIN_CLASS = "class"
PLUGIN_PARAMETERS = "parameters"
PLUGIN_DISTRIBUTION = "distribution"
PLUGIN_VERSION = "version"
PLUGIN_ATTRIBUTES = (
    Field(PLUGIN_ROLE, "the plugin's role in the scenario, e.g. `attack:backdoor`"),
    Field(PLUGIN_NAME, "its name as scenarios spell it"),
    Field(PLUGIN_LABEL, "name and the parameters that differ from their defaults, e.g. `krum(f = 2)`"),
    Field(PLUGIN_CLASS, "its Python class, `module.qualname`"),
    Field(PLUGIN_PARAMETERS, "the plugin object's `repr`, every parameter"),
    Field(PLUGIN_DISTRIBUTION, "the distribution that provided it"),
    Field(PLUGIN_VERSION, "that distribution's version"),
)


def plugin_group(role: str) -> str:
    """The group name of a role under `PLUGINS`: ``attack:backdoor`` -> ``attack_backdoor``."""
    return role.replace(":", "_")


# Besides those, an attack group's record (`/plugins/attack_<name>`) says who attacks and when.
ATTACK_MEMBERS = "members"
ATTACK_PLACEMENT = "placement"
ATTACK_PARTICIPATION = "participation"
ATTACK_ATTRIBUTES = (
    Field(ATTACK_MEMBERS, "the group's client ids, in member order"),
    Field(ATTACK_PLACEMENT, "how they were chosen: `random` (a count drawn from the seed), `ids` (listed in the "
                            "scenario) or `owners(label = L, count = N)`"),
    Field(ATTACK_PARTICIPATION, "`sampled` (like every client), `every round` or `every k rounds` (`present`)"),
)

AGGREGATOR_GROUP = "aggregator"
DETECTOR_PREFIX = "detector_"
ATTACK_PREFIX = "attack_"

# /versions: attributes, one per library.
VERSIONED_DISTRIBUTIONS = ("tensorflow", "tensorflow-federated", "numpy", "h5py", "pluggy", "lark", "attrs")

# --------------------------------------------------------------------------
# A sweep: one file for the whole grid.

KIND = "kind"
SWEEP_KIND = "sweep"
RUNS = "runs"
"""The group holding the points' runs, and the root attribute counting them."""
SWEEP_ATTRIBUTES = (
    Field(KIND, '`"sweep"`'),
    Field(FEDARENA_VERSION, "version of fedarena that wrote the file"),
    Field(SCENARIO, "the scenario file's text, sweep block included"),
    Field(SCENARIO_SHA256, "SHA-256 of that text"),
    Field(TITLE, "the scenario's title"),
    Field(RUNS, "number of points"),
    Field(STATUS, "`running`, `complete`, `interrupted` or `failed`"),
    Field(STARTED_AT, "UTC time (ISO 8601) the sweep started"),
    Field(FINISHED_AT, "UTC time (ISO 8601) the sweep ended"),
)
INDEX_LABEL = "index/label"
INDEX_POINT = "index/point"
INDEX_STATUS = "index/status"
SWEEP_INDEX = (
    Field(INDEX_LABEL, "`[runs]` each point's label, e.g. `aggregator=krum(f = 2), seed=3`"),
    Field(INDEX_POINT, '`[runs]` each point\'s assignments as JSON (`{"aggregator": "krum(f = 2)", "seed": "3"}`)'),
    Field(INDEX_STATUS, "`[runs]` `pending`, `running`, `complete`, `failed` or `interrupted`"),
)

# Attributes a point's run group has besides a run's.
POINT_LABEL = "label"
POINT_ASSIGNMENTS = "point"
POINT_INDEX = "index"
POINT_ATTRIBUTES = (
    Field(POINT_LABEL, "the point's label, as in `/index/label`"),
    Field(POINT_ASSIGNMENTS, "its assignments as JSON, as in `/index/point`"),
    Field(POINT_INDEX, "its index in the sweep"),
)


def point_group(index: int) -> str:
    """The group of sweep point ``index``: ``runs/NNNN``, zero-padded."""
    return f"{RUNS}/{index:04d}"


# Every name the documentation must list, by section (see tests).
DOCUMENTED = {
    "root attributes": _names(RUN_ATTRIBUTES),
    "metrics": _names(METRIC_FIELDS),
    "clients": _names(CLIENT_FIELDS),
    "timing": _names(TIMING_FIELDS),
    "detection": _names(DETECTION_FIELDS),
    "split": _names(SPLIT_FIELDS) + (ATTACK_GROUPS,),
    "plugins": _names(PLUGIN_ATTRIBUTES),
    "attack groups": _names(ATTACK_ATTRIBUTES),
    "model": _names(MODEL_ATTRIBUTES) + _names(SAVED_FIELDS),
    "start": _names(START_ATTRIBUTES),
    "sweep": _names(SWEEP_ATTRIBUTES) + _names(SWEEP_INDEX) + _names(POINT_ATTRIBUTES),
}
