"""Running a checked scenario on TensorFlow Federated: `Run` prepares the
data and traces the round (`computations`), then `Run.rounds` executes it
round by round.

One round, as TFF sees it (see docs/architecture.md and `computations`):

  client work   ``tff.federated_map`` of `build_client_work` over the
                sampled clients: data poisoning of malicious clients' data,
                local training, one flat update row per client;
  gather        `build_gather`: a ``tff.federated_aggregate`` whose
                accumulate/merge concatenate rows (order restored by slot
                in the report);
  server stage  `build_server_stage`: one TF computation at SERVER on the
                stacked ``[K, d]`` matrix: model poisoning of malicious
                rows, non-finite rows dropped, detectors, the aggregator,
                the server step.

The global model is one flat float32 vector (`FlatModel`).
"""

from __future__ import annotations

import time

import attrs
import numpy as np

from fedarena.core.execution.backends.tff_context import call_interruptibly
from fedarena.core.execution.engine.client_store import ClientStore
from fedarena.core.execution.engine.cohort import group_inputs
from fedarena.core.execution.engine.computations import (  # noqa: F401  (the core's kept-row plumbing, imported from here)
    RoundComputations,
    aggregate_kept,
    detect_on_kept,
)
from fedarena.core.execution.engine.detection import confusion, precision_recall
from fedarena.core.execution.engine.flat_model import FlatModel
from fedarena.core.execution.engine.sampling import attacker_groups, round_clients, sample_clients
from fedarena.core.results import schema
from fedarena.core.scenario.check import Scenario
from fedarena.core.scenario.start import load_start

__all__ = [
    "ClientStore", "FlatModel", "RoundComputations", "RoundResult", "Run", "aggregate_kept", "attacker_groups",
    "call_interruptibly", "confusion", "detect_on_kept", "precision_recall", "sample_clients",
]


@attrs.frozen
class RoundResult:
    round: int
    weights: np.ndarray
    state: dict  # server-side plugin state after the round
    clients: dict[str, np.ndarray]  # per slot
    metrics: dict[str, float]  # empty when the round was not evaluated
    seconds: dict[str, float]  # per stage
    detection: dict[str, int]  # confusion counts of this round's drops against the malicious set


class Run:
    """One scenario's run: data prepared, computations traced, rounds executed."""

    def __init__(self, scenario: Scenario, on_phase=None):
        """``on_phase(text)``, when given, is told each step as it begins
        (``loading data``, ``building the model``, ...): the progress display."""
        on_phase = on_phase or (lambda text: None)
        self.scenario = scenario
        on_phase("loading data")
        self.data = scenario.dataset.load(scenario.seed)
        # The server's root samples (if any) are drawn first and kept from the clients.
        pool = np.random.default_rng([scenario.seed, 3]).permutation(len(self.data.train_y))
        root, pool = np.sort(pool[: scenario.training.root_samples]), np.sort(pool[scenario.training.root_samples :])
        labels = self.data.train_y if not len(root) else self.data.train_y[pool]
        parts = scenario.split.partition(labels, scenario.num_clients, np.random.default_rng([scenario.seed, 0]))
        if len(root):
            parts = [pool[p] for p in parts]
        self.clients = ClientStore(self.data.train_x, self.data.train_y, parts, root)
        num_classes = self.data.info.num_classes
        self.class_histogram = np.stack([np.bincount(self.data.train_y[p], minlength=num_classes) for p in parts])
        self.groups, self.members = attacker_groups(scenario, self.class_histogram)
        on_phase("building the model")
        self.model = FlatModel(scenario)
        # `start from`: round 1 starts from the file's weights (checked against the model's size here).
        self.start_sha256 = ""
        if scenario.start is not None:
            self.model.initial, self.start_sha256 = load_start(scenario, self.model.dim)
        on_phase("tracing the TFF computations")
        self.computations = RoundComputations(scenario, self.model, self.clients)

    # The workers in use, checked while a round runs (see `WorkerPool.check`).
    watch = None

    def close(self) -> None:
        self.clients.close()

    def client_inputs(self, round_number: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        ids = round_clients(self.scenario, round_number, self.groups)
        active = np.array([g >= 0 and self.scenario.attacks[g].active_in(round_number) for g in self.groups[ids]])
        acting = np.where(active, self.groups[ids], -1).astype(np.int32)
        inputs = [
            dict(
                group=acting[slot],
                seed=np.array([self.scenario.seed, round_number * self.scenario.num_clients + cid], np.int64),
                slot=np.int32(slot), client=np.int32(cid), member=self.members[cid],
            )
            for slot, cid in enumerate(ids)
        ]
        return ids, acting, inputs

    def evaluate(self, weights: np.ndarray) -> dict[str, float]:
        test_x, test_y = self.data.test_x, self.data.test_y
        logits = self.model.predict(weights, test_x)
        metrics = {f"test_{name}": metric.compute(test_y, logits) for name, metric in self.scenario.metrics}
        facts = self.scenario.facts
        for group in self.scenario.attacks:
            found = group.attack.test_metrics(lambda x: self.model.predict(weights, x), test_x, test_y, facts)
            metrics.update({f"{group.name}_{name}": value for name, value in found.items()})
        return metrics

    def round_info(self, round_number: int, state: dict) -> dict:
        # Client seeds are [seed, round * clients + id] >= 0; the server's are
        # negative in the second word, so the two never collide.
        return dict(round=np.int32(round_number), seed=np.array([self.scenario.seed, -round_number], np.int64),
                    state=state)

    def rounds(self, weights: np.ndarray | None = None, state: dict | None = None, first_round: int = 1,
               detection_totals: dict[str, int] | None = None):
        """Yield a `RoundResult` per round, from ``first_round`` on (a resumed
        run passes the checkpoint's weights, state and detection counts)."""
        weights = self.model.initial if weights is None else weights
        initial = self.computations.initial_state
        state = dict(state or {})
        self.local_norm = self._local_norm(state.pop(schema.CLIENT_STATE, {}).get(schema.LOCAL_NORM))
        # A checkpoint read back from HDF5 lists names alphabetically; the
        # round's TFF type takes the state in the order of `initial_state`.
        state = initial if not state else {key: {name: state[key][name] for name in initial[key]}
                                           for key in initial}
        self.detection_totals = dict(detection_totals or {})
        for round_number in range(first_round, self.scenario.rounds + 1):
            started = time.perf_counter()
            ids, acting, inputs = self.client_inputs(round_number)
            if self.local_norm is not None:  # FedBN: each client trains from its own normalization layers
                for client, given in zip(ids, inputs):
                    given["local_norm"] = self.local_norm[client]
            if self.computations.group_size > 1:  # cohort training: a TFF client value per group of clients
                inputs = group_inputs(inputs, self.computations.group_size)
            out = call_interruptibly(self.computations.run_round, weights, self.round_info(round_number, state), inputs,
                                     watch=self.watch)
            weights = np.asarray(out.pop("weights"), dtype=np.float32)
            state = _as_arrays(out.pop("state"))
            saved_state = state
            if self.local_norm is not None:  # ... and keeps what it reached (rows in slot order)
                self.local_norm[ids] = np.asarray(out.pop("local_norm"), np.float32)
                saved_state = {**state, schema.CLIENT_STATE: {schema.LOCAL_NORM: self.local_norm.copy()}}
            attack_s, detection_s, aggregation_s = np.asarray(out.pop("stage_seconds"), np.float64)
            trained = time.perf_counter()
            clients = {name: np.asarray(value) for name, value in out.items()}
            clients.update(id=ids, malicious=acting >= 0, attack_group=acting)
            detection = confusion(flagged=~clients["kept"], malicious=clients["malicious"])
            self.detection_totals = {k: self.detection_totals.get(k, 0) + v for k, v in detection.items()}
            metrics = {}
            if round_number % self.scenario.evaluate_every == 0 or round_number == self.scenario.rounds:
                metrics = self.evaluate(self.evaluated_weights(weights))
                metrics.update(precision_recall(self.detection_totals))
            evaluated = time.perf_counter()
            seconds = {
                "client": trained - started - attack_s - detection_s - aggregation_s,
                "attack": attack_s, "detection": detection_s, "aggregation": aggregation_s,
                "evaluation": evaluated - trained,
            }
            yield RoundResult(round_number, weights, saved_state, clients, metrics, seconds, detection)

    def _local_norm(self, saved: np.ndarray | None) -> np.ndarray | None:
        """FedBN: every client's values of the model's local coordinates
        (`FlatModel.local`), ``[clients, k]``: the checkpoint's when
        resuming, else the initial model's; None when the model keeps
        nothing on the clients."""
        if not len(self.model.local):
            return None
        if saved is not None:
            return np.array(saved, np.float32)
        return np.tile(self.model.initial[self.model.local], (self.scenario.num_clients, 1))

    def evaluated_weights(self, weights: np.ndarray) -> np.ndarray:
        """The model the server evaluates on its test set: the global one,
        except with FedBN, where the local coordinates (which the global
        model never changes) take the mean of the clients' own values over
        the clients that have trained (whose values left the initial
        ones).  FedBN itself tests each client's model on that client's
        test data; fedarena has one test set, at the server."""
        if self.local_norm is None:
            return weights
        trained = np.any(self.local_norm != self.model.initial[self.model.local], axis=1)
        if not trained.any():
            return weights
        evaluated = np.array(weights, np.float32)
        evaluated[self.model.local] = self.local_norm[trained].mean(axis=0)
        return evaluated


def _as_arrays(structure) -> dict:
    """TFF's returned structure -> nested dicts of NumPy arrays."""
    if hasattr(structure, "items"):
        return {key: _as_arrays(value) for key, value in structure.items()}
    return np.asarray(structure)
