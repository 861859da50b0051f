"""An in-process TFF executor: rounds run on TensorFlow's own runtime.

TFF 0.87's C++ ``worker_binary`` has no CUDA, so under it every TFF
computation runs on the CPU.  `LocalExecutor` evaluates the compiled
computations in this process instead: the federated structure (lambdas,
blocks, calls, intrinsics) in Python, and every ``tff.tensorflow.computation``
as a concrete TensorFlow function built once from its GraphDef, so that TF
places its kernels on a GPU where there is one.

Federated values are held per placement: CLIENTS as a list of its K member
values (or one value when all members are equal), SERVER as one value.
Tensors are NumPy values or ``tf.Tensor``s while a computation runs, and
NumPy values, as the C++ worker returns them, once computed.

Memory: a block drops a local once no later local reads it (`_dead_after`),
and a CLIENTS ``federated_map`` read only by a `STACKED_ROWS` aggregate
(fedarena's gather) is computed client by client straight into the stacked
rows (`_streamed_maps`), so that a round holds one client's row at a time
besides the update matrix.

What is supported, and what fails at once (naming the intrinsic or building
block), is listed in `SUPPORTED_INTRINSICS` and `UNSUPPORTED_INTRINSICS`.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorflow_federated.proto.v0 import computation_pb2, executor_pb2
from tensorflow_federated.python.common_libs import structure
from tensorflow_federated.python.core.impl.compiler import array as tff_array
from tensorflow_federated.python.core.impl.computation import computation_impl
from tensorflow_federated.python.core.impl.executors import executor_base, executor_value_base
from tensorflow_federated.python.core.impl.types import computation_types, placements, type_serialization

__all__ = [
    "LocalExecutor",
    "LocalExecutionError",
    "UnsupportedComputationError",
    "SUPPORTED_INTRINSICS",
    "UNSUPPORTED_INTRINSICS",
    "device_summary",
    "local_backend",
    "local_context",
]


class LocalExecutionError(RuntimeError):
    """A computation could not be evaluated by the local executor."""


class UnsupportedComputationError(LocalExecutionError, NotImplementedError):
    """A computation uses an intrinsic or building block the local executor
    does not implement; raised when the computation is created, before any
    of it runs."""


# --------------------------------------------------------------------------
# Devices


_gpus_configured = False
_growth_refused: list = []  # GPUs TF had initialised before we could ask


def _enable_memory_growth() -> None:
    """Ask TF to grow GPU memory as needed rather than take it all at once.
    Only possible before TF initialises its devices: this module does it on
    import; a GPU where it came too late is named by `device_summary`."""
    global _gpus_configured
    if _gpus_configured:
        return
    _gpus_configured = True
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            with contextlib.suppress(Exception):
                if tf.config.experimental.get_memory_growth(gpu):
                    continue
            _growth_refused.append(gpu.name)


_enable_memory_growth()


def device_summary() -> str:
    """Where TF computations of the local backend run: the first GPU TF
    sees (with its name), or "CPU"."""
    _enable_memory_growth()
    logical = tf.config.list_logical_devices("GPU")
    if not logical:
        return "CPU"
    physical = tf.config.list_physical_devices("GPU")
    name = ""
    if physical:
        with contextlib.suppress(Exception):
            name = tf.config.experimental.get_device_details(physical[0]).get("device_name", "")
    where = logical[0].name.replace("/device:", "")
    summary = f"{where} ({name})" if name else where
    if len(logical) > 1:
        summary += f" and {len(logical) - 1} more GPU(s)"
    if _growth_refused:
        summary += "; memory growth not enabled (TF initialised the GPU first)"
    return summary


# --------------------------------------------------------------------------
# Values


class _Fed:
    """A federated value: ``items`` holds one value per CLIENTS member, or a
    single value when ``all_equal`` (always so at SERVER)."""

    __slots__ = ("placement", "all_equal", "items")

    def __init__(self, placement, all_equal: bool, items: list):
        self.placement = placement
        self.all_equal = all_equal
        self.items = items

    def members(self, count: int) -> list:
        return self.items * count if self.all_equal else self.items

    @property
    def value(self):
        return self.items[0]

    def __repr__(self):
        return f"_Fed({self.placement}, all_equal={self.all_equal}, {self.items!r})"


def _server(value) -> _Fed:
    return _Fed(placements.SERVER, True, [value])


class _Runtime:
    """What a call needs at run time: the cardinality of CLIENTS."""

    __slots__ = ("clients",)

    def __init__(self, clients: int):
        self.clients = clients


class _Function:
    """A functional value: ``call(arg, rt)``."""

    __slots__ = ()

    def call(self, arg, rt):  # pragma: no cover - abstract
        raise NotImplementedError


class _Lambda(_Function):
    __slots__ = ("name", "body", "env")

    def __init__(self, name, body, env):
        self.name, self.body, self.env = name, body, env

    def call(self, arg, rt):
        if self.name:
            env = dict(self.env)
            env[self.name] = arg
            return self.body(env, rt)
        return self.body(self.env, rt)


class _Builtin(_Function):
    __slots__ = ("fn", "uri")

    def __init__(self, fn, uri):
        self.fn, self.uri = fn, uri

    def call(self, arg, rt):
        return self.fn(arg, rt)


def _is_string(dtype) -> bool:
    return dtype in (np.str_, np.bytes_, np.object_) or getattr(dtype, "type", None) in (np.str_, np.bytes_, np.object_)


def _tensor_in(value, type_spec: computation_types.TensorType):
    """A value given for a tensor type, as the executor holds it."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return tf.convert_to_tensor(value)
    dtype = type_spec.dtype.type
    if _is_string(dtype):
        return tf.constant(np.asarray(value, dtype=object), dtype=tf.string)
    return tf.constant(np.asarray(value, dtype=dtype))


def _tensor_out(value, type_spec: computation_types.TensorType):
    """A tensor as the C++ worker's values come back: a NumPy array, or a
    NumPy scalar for a scalar (bytes for a scalar string)."""
    if isinstance(value, tf.Tensor):
        value = value.numpy()
    dtype = type_spec.dtype.type
    if _is_string(dtype):
        array = np.asarray(value, dtype=object)
        if array.shape == ():
            item = array.item()
            return item.encode() if isinstance(item, str) else item
        return np.vectorize(lambda s: s.encode() if isinstance(s, str) else s, otypes=[object])(array)
    array = np.asarray(value, dtype=dtype)
    if array.shape == ():
        return dtype(array.item())
    return array


def _value_in(value, type_spec):
    """Ingest a Python value of TFF type ``type_spec`` (what
    ``create_value`` gets once TFF's context has transformed the args)."""
    if isinstance(type_spec, computation_types.TensorType):
        return _tensor_in(value, type_spec)
    if isinstance(type_spec, computation_types.StructType):
        if isinstance(value, structure.Struct):
            elements = [v for _, v in structure.iter_elements(value)]
        elif isinstance(value, Mapping):
            names = structure.name_list(type_spec)
            elements = [value[n] for n in names] if len(names) == len(type_spec) else list(value.values())
        elif hasattr(value, "_asdict") or hasattr(value, "__attrs_attrs__"):
            elements = [v for _, v in structure.iter_elements(structure.from_container(value))]
        else:
            elements = list(value)
        if len(elements) != len(type_spec):
            raise TypeError(f"a value with {len(elements)} elements for the struct type {type_spec}")
        return structure.Struct(
            [(name, _value_in(v, t)) for (name, t), v in zip(structure.iter_elements(type_spec), elements)]
        )
    if isinstance(type_spec, computation_types.FederatedType):
        member = type_spec.member
        if type_spec.all_equal:
            if type_spec.placement is placements.CLIENTS and isinstance(value, list) and len(value) == 1:
                value = value[0]  # as TFF serializes it
            return _Fed(type_spec.placement, True, [_value_in(value, member)])
        if not isinstance(value, list):
            raise TypeError(f"expected a list of member values for {type_spec}, found {type(value).__name__}")
        return _Fed(type_spec.placement, False, [_value_in(v, member) for v in value])
    if isinstance(type_spec, computation_types.SequenceType):
        if isinstance(value, tf.data.Dataset):
            return value
        if isinstance(value, list):
            from tensorflow_federated.python.core.impl.utils import tensorflow_utils

            return tensorflow_utils.make_data_set_from_elements(None, value, type_spec.element)
        raise TypeError(f"expected a tf.data.Dataset or a list for {type_spec}, found {type(value).__name__}")
    raise UnsupportedComputationError(f"LocalExecutor cannot hold a value of type {type_spec}")


def _value_out(value, type_spec, clients: int):
    """A held value as TFF's worker returns it from ``compute``."""
    if isinstance(type_spec, computation_types.TensorType):
        return _tensor_out(value, type_spec)
    if isinstance(type_spec, computation_types.StructType):
        return structure.Struct([
            (name, _value_out(value[i], t, clients)) for i, (name, t) in enumerate(structure.iter_elements(type_spec))
        ])
    if isinstance(type_spec, computation_types.FederatedType):
        if type_spec.all_equal:
            return _value_out(value.items[0], type_spec.member, clients)
        return [_value_out(v, type_spec.member, clients) for v in value.members(clients)]
    if isinstance(type_spec, computation_types.SequenceType):
        return value
    if isinstance(value, _Function) or isinstance(type_spec, computation_types.FunctionType):
        raise LocalExecutionError(f"a value of functional type {type_spec} cannot be computed")
    return value


# --------------------------------------------------------------------------
# TensorFlow computations


def _distinct_function_names(graph_def) -> None:
    """Rename, in place, the functions of ``graph_def``'s library (while-loop
    bodies, ``tf.function``s) after a digest of the whole library.

    This process runs every graph in one TensorFlow runtime, which holds one
    definition per function name.  The same functions arrive under the same
    names in different forms: TFF's single-worker compiler optimises them
    with Grappler, its mergeable (several workers) compiler does not, so a
    second form would be refused ("Attempting to add a duplicate function
    with name ... where the previous and current definitions differ").
    Named after their library's digest, equal functions keep one name and
    different ones never share one."""
    if not graph_def.library.function:
        return
    library = graph_def.library
    digest = hashlib.sha256(library.SerializeToString(deterministic=True)).hexdigest()[:16]
    names = {f.signature.name: f"{f.signature.name}_fa{digest}" for f in library.function}

    def in_func(func) -> None:  # a NameAttrList
        func.name = names.get(func.name, func.name)
        for value in func.attr.values():
            in_attr(value)

    def in_attr(value) -> None:  # an AttrValue
        which = value.WhichOneof("value")
        if which == "func":
            in_func(value.func)
        elif which == "list":
            for func in value.list.func:
                in_func(func)

    def in_node(node) -> None:
        node.op = names.get(node.op, node.op)
        for value in node.attr.values():
            in_attr(value)

    for node in graph_def.node:
        in_node(node)
    for function in library.function:
        function.signature.name = names[function.signature.name]
        for node in function.node_def:
            in_node(node)
        for value in function.attr.values():
            in_attr(value)
    for gradient in library.gradient:
        gradient.function_name = names.get(gradient.function_name, gradient.function_name)
        gradient.gradient_func = names.get(gradient.gradient_func, gradient.gradient_func)


class _TensorFlowFunction(_Function):
    """A ``tff.tensorflow.computation`` as a concrete TF function, built once
    from its GraphDef (``wrap_function`` + ``prune``)."""

    __slots__ = ("fn", "init", "flatten", "rebuild", "feed_count", "token")

    def __init__(self, proto: computation_pb2.Computation):
        from tensorflow_federated.python.tensorflow_libs import serialization_utils

        tf_proto = proto.tensorflow
        type_spec = type_serialization.deserialize_type(proto.type)
        graph_def = serialization_utils.unpack_graph_def(tf_proto.graph_def)
        _distinct_function_names(graph_def)

        param_names: list = []
        param_kinds: list = []
        if tf_proto.HasField("parameter"):
            self.flatten = _flattener(tf_proto.parameter, type_spec.parameter, param_names, param_kinds)
        else:
            self.flatten = None
        result_names: list = []
        result_kinds: list = []
        self.rebuild = _rebuilder(tf_proto.result, type_spec.result, result_names, result_kinds)

        def import_graph():
            tf.graph_util.import_graph_def(graph_def, name="")

        wrapped = tf.compat.v1.wrap_function(import_graph, [])
        graph = wrapped.graph

        def tensor(name):
            return graph.get_tensor_by_name(name if ":" in name else f"{name}:0")

        feeds, used = [], []
        for index, name in enumerate(param_names):
            try:
                feeds.append(tensor(name))
                used.append(index)
            except (KeyError, ValueError):
                pass  # optimised away: the computation does not read it
        self.token = None
        if tf_proto.session_token_tensor_name:
            with contextlib.suppress(KeyError, ValueError):
                feeds.append(tensor(tf_proto.session_token_tensor_name))
                self.token = tf.constant("")
        self.feed_count = len(param_names)
        fetch_tensors = [tensor(n) for n in result_names]
        # Fetch each distinct tensor once; a result that is an argument as it
        # came is passed through.
        unique, where = [], []
        feed_index = {id(t): i for i, t in enumerate(feeds)}
        positions: dict = {}
        for t in fetch_tensors:
            if id(t) in feed_index:
                where.append(("feed", feed_index[id(t)]))
            else:
                if id(t) not in positions:
                    positions[id(t)] = len(unique)
                    unique.append(t)
                where.append(("fetch", positions[id(t)]))
        self.init = None
        if tf_proto.initialize_op:
            init_op = graph.get_operation_by_name(tf_proto.initialize_op)
            self.init = wrapped.prune(feeds=[], fetches=[init_op])
        pruned = wrapped.prune(feeds=feeds, fetches=unique) if unique else None
        call_pruned = _flat_caller(pruned) if pruned is not None else None
        kinds = result_kinds
        used_tuple = tuple(used)
        all_used = len(used) == len(param_names)
        token = self.token

        def run(flat_args):
            if not all_used:
                flat_args = [flat_args[i] for i in used_tuple]
            if token is not None:
                flat_args = [*flat_args, token]
            if self.init is not None:
                self.init()
            outs = call_pruned(flat_args) if call_pruned is not None else []
            results = [outs[i] if k == "fetch" else flat_args[i] for k, i in where]
            return [_sequence_from_variant(r, kinds[j]) if kinds[j] is not None else r for j, r in enumerate(results)]

        self.fn = run

    def call(self, arg, rt):
        flat: list = []
        if self.flatten is not None:
            self.flatten(arg, flat)
        return self.rebuild(self.fn(flat))


def _flat_caller(function):
    """Call a pruned concrete function on its flat list of tensors.

    A pruned function has no structured signature: ``function(*args)``
    first fails to bind them (formatting an error message, which costs more
    than a small computation) before it falls back to the flat signature.
    TF 2.14's ``_call_flat`` goes straight there; other versions get the
    public call."""
    call_flat = getattr(function, "_call_flat", None)
    captured = list(getattr(function, "captured_inputs", []))
    if call_flat is None:
        return lambda args: function(*[tf.convert_to_tensor(a) for a in args])

    def call(args):
        return call_flat([a if isinstance(a, tf.Tensor) else tf.convert_to_tensor(a) for a in args], captured)

    return call


def _flattener(binding, type_spec, names: list, kinds: list):
    """A function appending the tensors of a value bound by ``binding`` to a
    list, in the order of ``names`` (filled here)."""
    which = binding.WhichOneof("binding")
    if which == "tensor":
        names.append(binding.tensor.tensor_name)
        kinds.append(None)
        return _append_tensor
    if which == "sequence":
        if binding.sequence.WhichOneof("binding") != "variant_tensor_name":
            raise UnsupportedComputationError(
                "LocalExecutor does not support sequence parameters bound by "
                f"{binding.sequence.WhichOneof('binding')!r}"
            )
        names.append(binding.sequence.variant_tensor_name)
        kinds.append("sequence")
        return _append_variant
    if which == "struct":
        parts = [
            _flattener(element, element_type, names, kinds)
            for element, (_, element_type) in zip(binding.struct.element, structure.iter_elements(type_spec))
        ]
        if len(parts) != len(binding.struct.element):
            raise LocalExecutionError(f"a struct binding does not match its type {type_spec}")

        def flatten(value, out):
            for i, part in enumerate(parts):
                part(value[i], out)

        return flatten
    raise UnsupportedComputationError(f"LocalExecutor does not support the TensorFlow binding {which!r}")


def _append_tensor(value, out):
    out.append(value)


def _append_variant(value, out):
    if isinstance(value, list):
        value = tf.data.Dataset.from_tensor_slices(value)
    out.append(tf.data.experimental.to_variant(value))


def _rebuilder(binding, type_spec, names: list, kinds: list):
    """A function making the result value from the flat list of fetched
    tensors, in the order of ``names`` (filled here)."""
    which = binding.WhichOneof("binding")
    if which == "tensor":
        index = len(names)
        names.append(binding.tensor.tensor_name)
        kinds.append(None)
        return lambda flat: flat[index]
    if which == "sequence":
        if binding.sequence.WhichOneof("binding") != "variant_tensor_name":
            raise UnsupportedComputationError(
                f"LocalExecutor does not support sequence results bound by {binding.sequence.WhichOneof('binding')!r}"
            )
        from tensorflow_federated.python.core.impl.types import type_conversions

        index = len(names)
        names.append(binding.sequence.variant_tensor_name)
        kinds.append(type_conversions.type_to_tf_structure(type_spec.element))
        return lambda flat: flat[index]
    if which == "struct":
        elements = list(structure.iter_elements(type_spec))
        parts = [
            (name, _rebuilder(element, element_type, names, kinds))
            for element, (name, element_type) in zip(binding.struct.element, elements)
        ]

        def rebuild(flat):
            return structure.Struct([(name, part(flat)) for name, part in parts])

        return rebuild
    raise UnsupportedComputationError(f"LocalExecutor does not support the TensorFlow binding {which!r}")


def _sequence_from_variant(variant, element_spec):
    return tf.data.experimental.from_variant(variant, structure=element_spec)


_tf_cache: "OrderedDict[bytes, _TensorFlowFunction]" = OrderedDict()
_TF_CACHE_SIZE = 512
_lock = threading.RLock()


def _tensorflow_function(proto: computation_pb2.Computation) -> _TensorFlowFunction:
    key = hashlib.sha256(proto.SerializeToString(deterministic=True)).digest()
    with _lock:
        found = _tf_cache.get(key)
        if found is not None:
            _tf_cache.move_to_end(key)
            return found
        _enable_memory_growth()
        found = _TensorFlowFunction(proto)
        _tf_cache[key] = found
        while len(_tf_cache) > _TF_CACHE_SIZE:
            _tf_cache.popitem(last=False)
        return found


# --------------------------------------------------------------------------
# Structural helpers


def _map_structure(fn, type_spec, *values):
    """Apply ``fn`` to the tensors (leaves) of values of ``type_spec``."""
    if isinstance(type_spec, computation_types.StructType):
        return structure.Struct([
            (name, _map_structure(fn, t, *[v[i] for v in values]))
            for i, (name, t) in enumerate(structure.iter_elements(type_spec))
        ])
    if isinstance(type_spec, computation_types.TensorType):
        return fn(*values)
    if isinstance(type_spec, computation_types.FederatedType):
        first = values[0]
        count = max((len(v.items) for v in values if not v.all_equal), default=1)
        all_equal = all(v.all_equal for v in values)
        items = [
            _map_structure(fn, type_spec.member, *member)
            for member in zip(*[v.items if all_equal else v.members(count) for v in values])
        ]
        return _Fed(first.placement, all_equal, items)
    raise UnsupportedComputationError(f"LocalExecutor cannot do arithmetic on values of type {type_spec}")


def _zeros(type_spec):
    if isinstance(type_spec, computation_types.TensorType):
        if type_spec.shape is None or any(d is None for d in type_spec.shape):
            raise LocalExecutionError(f"generic_zero of a tensor type of unknown shape: {type_spec}")
        return np.zeros(type_spec.shape, dtype=type_spec.dtype.type)
    if isinstance(type_spec, computation_types.StructType):
        return structure.Struct([(name, _zeros(t)) for name, t in structure.iter_elements(type_spec)])
    if isinstance(type_spec, computation_types.FederatedType):
        return _Fed(type_spec.placement, True, [_zeros(type_spec.member)])
    raise UnsupportedComputationError(f"generic_zero of type {type_spec}")


def _from_dataset_element(element, type_spec):
    if isinstance(type_spec, computation_types.StructType):
        if isinstance(element, Mapping):
            elements = [element[name] for name in structure.name_list(type_spec)]
        else:
            elements = list(element)
        return structure.Struct(
            [(name, _from_dataset_element(e, t)) for (name, t), e in zip(structure.iter_elements(type_spec), elements)]
        )
    return element


def _to_python(value, type_spec):
    """A held value as TF-nest-friendly Python containers (for datasets)."""
    if isinstance(type_spec, computation_types.StructType):
        items = [(name, _to_python(value[i], t)) for i, (name, t) in enumerate(structure.iter_elements(type_spec))]
        if all(name for name, _ in items):
            return OrderedDict(items)
        return tuple(v for _, v in items)
    return value


# --------------------------------------------------------------------------
# Intrinsics


def _first_count(values, rt) -> int:
    for v in values:
        if isinstance(v, _Fed) and not v.all_equal:
            return len(v.items)
    return rt.clients


def _intrinsic(uri: str, type_spec) -> object:
    """The value of the intrinsic ``uri`` with the concrete type
    ``type_spec``: a `_Function`, or (``generic_zero``) a value."""
    maker = _INTRINSICS.get(uri)
    if maker is None:
        if uri in UNSUPPORTED_INTRINSICS:
            raise UnsupportedComputationError(
                f"LocalExecutor does not support the intrinsic {uri!r} ({UNSUPPORTED_INTRINSICS[uri]}); "
                "run this computation on TFF's worker instead"
            )
        raise UnsupportedComputationError(f"LocalExecutor does not support the intrinsic {uri!r}")
    return maker(uri, type_spec)


def _fn(uri, body):
    return _Builtin(body, uri)


def _federated_map(uri, type_spec):
    result_equal = type_spec.result.all_equal
    result_placement = type_spec.result.placement

    def body(arg, rt):
        fn, value = arg[0], arg[1]
        if value.placement is placements.SERVER or (result_equal and value.all_equal):
            return _Fed(result_placement, True, [fn.call(value.items[0], rt)])
        call = fn.call
        return _Fed(result_placement, False, [call(v, rt) for v in value.members(rt.clients)])

    return _fn(uri, body)


def _federated_apply(uri, type_spec):
    def body(arg, rt):
        return _server(arg[0].call(arg[1].items[0], rt))

    return _fn(uri, body)


def _federated_broadcast(uri, type_spec):
    def body(arg, rt):
        return _Fed(placements.CLIENTS, True, [arg.items[0]])

    return _fn(uri, body)


def _federated_value(placement):
    def make(uri, type_spec):
        def body(arg, rt):
            return _Fed(placement, True, [arg])

        return _fn(uri, body)

    return make


def _federated_eval(placement):
    def make(uri, type_spec):
        def body(fn, rt):
            if placement is placements.SERVER:
                return _server(fn.call(None, rt))
            return _Fed(placements.CLIENTS, False, [fn.call(None, rt) for _ in range(rt.clients)])

        return _fn(uri, body)

    return make


def _zip_member(value, index):
    """Member ``index`` of a (nested) struct of federated values."""
    if isinstance(value, _Fed):
        return value.items[0] if value.all_equal else value.items[index]
    if isinstance(value, structure.Struct):
        return structure.Struct([(name, _zip_member(v, index)) for name, v in structure.iter_elements(value)])
    raise LocalExecutionError(f"federated_zip over a value that is not federated: {value!r}")


def _federated_values_in(value, out):
    if isinstance(value, _Fed):
        out.append(value)
    elif isinstance(value, structure.Struct):
        for _, v in structure.iter_elements(value):
            _federated_values_in(v, out)
    return out


def _federated_zip(placement):
    def make(uri, type_spec):
        result_equal = type_spec.result.all_equal

        def body(arg, rt):
            feds = _federated_values_in(arg, [])
            if placement is placements.SERVER or all(f.all_equal for f in feds):
                member = _zip_member(arg, 0)
                if placement is placements.SERVER or result_equal:
                    return _Fed(placement, True, [member])
                return _Fed(placement, False, [member] * rt.clients)
            count = _first_count(feds, rt)
            for f in feds:
                if not f.all_equal and len(f.items) != count:
                    raise LocalExecutionError(f"federated_zip_at_clients of {len(f.items)} and {count} members")
            return _Fed(placement, False, [_zip_member(arg, k) for k in range(count)])

        return _fn(uri, body)

    return make


# A contract with whoever builds a ``federated_aggregate`` (fedarena's
# gather, `build_gather`): an accumulator that is a struct whose one field
# is named STACKED_ROWS promises that ``accumulate`` appends the member to
# that field along axis 0 (a member of one rank less as a new row, one of
# the same rank as a block of rows) and that ``merge`` concatenates.  Such
# an aggregate is evaluated by one concatenation of the zero and all members
# instead of K calls of ``accumulate``, which copy K^2/2 rows in all and, on
# TF's pooling allocator, leave the pool at several times the result's size.
STACKED_ROWS = "fedarena_stacked_rows"


def _stacked_rows_type(zero_type):
    """The rows' type inside an accumulator of ``zero_type`` marked with
    `STACKED_ROWS`, or None for any other accumulator."""
    if (isinstance(zero_type, computation_types.StructType) and len(zero_type) == 1
            and structure.name_list(zero_type) == [STACKED_ROWS]):
        return zero_type[0]
    return None


def _row_axes(rows_type, member_type, uri) -> list:
    """For each tensor of the rows (in `_concat_rows`' order), whether a
    member's tensor is one row (True) or a block of rows (False)."""
    if isinstance(rows_type, computation_types.StructType) and isinstance(member_type, computation_types.StructType) \
            and len(rows_type) == len(member_type):
        return [axis for i in range(len(rows_type)) for axis in _row_axes(rows_type[i], member_type[i], uri)]
    if isinstance(rows_type, computation_types.TensorType) and isinstance(member_type, computation_types.TensorType) \
            and rows_type.shape is not None and member_type.shape is not None \
            and len(rows_type.shape) - len(member_type.shape) in (0, 1):
        return [len(rows_type.shape) == len(member_type.shape) + 1]
    raise UnsupportedComputationError(
        f"{uri} marked {STACKED_ROWS!r} with members of type {member_type} that are not rows of {rows_type}")


def _concat_rows(rows_type, zero, members: list, as_row):
    """``zero`` with every member appended along axis 0, one concatenation
    per tensor; ``as_row`` yields `_row_axes`' flags in order."""
    if isinstance(rows_type, computation_types.StructType):
        return structure.Struct([
            (name, _concat_rows(t, zero[i], [m[i] for m in members], as_row))
            for i, (name, t) in enumerate(structure.iter_elements(rows_type))
        ])
    one_row = next(as_row)
    if not members:
        return _tensor_in(zero, rows_type)
    return tf.concat([zero, *[tf.expand_dims(m, 0) if one_row else m for m in members]], axis=0)


def _streamable(rows_type, row_axes) -> bool:
    """Whether a marked aggregate can take its members one at a time
    (`_MappedLater`): every member is one row (a block's size is known only
    once it is computed) of tensors that are not strings."""
    leaf_types = _leaf_types(rows_type, [])
    return bool(leaf_types) and all(row_axes) and not any(_is_string(t.dtype.type) for t in leaf_types)


def _leaf_types(type_spec, out: list) -> list:
    """The tensor types of ``type_spec``, depth first."""
    if isinstance(type_spec, computation_types.StructType):
        for _, t in structure.iter_elements(type_spec):
            _leaf_types(t, out)
    else:
        out.append(type_spec)
    return out


def _leaves(value, type_spec, out: list) -> list:
    """The tensors of a value of ``type_spec`` (or of one of its rows), in
    `_leaf_types`' order."""
    if isinstance(type_spec, computation_types.StructType):
        for i in range(len(type_spec)):
            _leaves(value[i], type_spec[i], out)
    else:
        out.append(value)
    return out


def _rebuilt(type_spec, leaves):
    """`_leaves` undone: the tensors ``leaves`` (an iterator) as a value of ``type_spec``."""
    if isinstance(type_spec, computation_types.StructType):
        return structure.Struct([(name, _rebuilt(t, leaves)) for name, t in structure.iter_elements(type_spec)])
    return next(leaves)


def _on_cpu(tensor) -> bool:
    return isinstance(tensor, tf.Tensor) and tf.DeviceSpec.from_string(tensor.device).device_type == "CPU"


def _stream_rows(uri, rows_type, zero, mapped: "_MappedLater", rt):
    """`_concat_rows` of the members of ``mapped``, computed one at a time:
    each is written into matrices allocated once (uninitialised, written in
    place) and dropped before the next is computed, so that the clients'
    rows and the stacked matrix never exist at once.  Off the CPU (where
    this was not measured) the members are collected and concatenated."""
    leaf_types = _leaf_types(rows_type, [])
    count, results = mapped.count(rt), mapped.results(rt)
    member = next(results, _END)
    if member is _END or not all(_on_cpu(leaf) for leaf in _leaves(member, rows_type, [])):
        members = [] if member is _END else [member, *results]
        return _concat_rows(rows_type, zero, members, iter([True] * len(leaf_types)))
    matrices, offsets = [], []
    for z, t, leaf in zip(_leaves(zero, rows_type, []), leaf_types, _leaves(member, rows_type, [])):
        z = _tensor_in(z, t)
        _check_row(uri, z.shape[1:], z.dtype, leaf)
        matrix = tf.raw_ops.Empty(shape=[z.shape[0] + count, *leaf.shape], dtype=leaf.dtype, init=False)
        if z.shape[0]:
            tf.raw_ops.InplaceUpdate(x=matrix, i=tf.range(z.shape[0]), v=z)
        matrices.append(matrix)
        offsets.append(z.shape[0])
    del z, leaf
    stacked = 0
    while member is not _END:
        for matrix, offset, leaf in zip(matrices, offsets, _leaves(member, rows_type, [])):
            _check_row(uri, matrix.shape[1:], matrix.dtype, leaf)
            # InplaceUpdate writes into ``matrix`` itself (its output is the same buffer).
            tf.raw_ops.InplaceUpdate(x=matrix, i=[offset + stacked], v=tf.expand_dims(leaf, 0))
        stacked += 1
        del leaf
        member = _END  # drop this member before the next one is computed
        member = next(results, _END)
    return _rebuilt(rows_type, iter(matrices))


def _check_row(uri, shape, dtype, row) -> None:
    """What ``tf.concat`` would refuse: a row of another shape or type."""
    if not isinstance(row, tf.Tensor) or row.shape != shape or row.dtype != dtype:
        found = f"of shape {row.shape} and type {row.dtype.name}" if isinstance(row, tf.Tensor) else repr(row)
        raise LocalExecutionError(f"{uri} cannot stack a row {found} onto rows of shape {shape} and type {dtype.name}")


_END = object()


class _MappedLater:
    """A CLIENTS ``federated_map`` whose only reader is a streamable
    `STACKED_ROWS` aggregate (`_streamed_maps`): its members are computed
    when the aggregate stacks them, one at a time, once."""

    __slots__ = ("fn", "value")

    def __init__(self, fn, value: _Fed):
        self.fn, self.value = fn, value

    def count(self, rt) -> int:
        return rt.clients if self.value.all_equal else len(self.value.items)

    def results(self, rt):
        """The members, each computed when asked for."""
        if self.fn is None:
            raise LocalExecutionError("a federated_map streamed into an aggregate was read twice")
        fn, value, count = self.fn, self.value, self.count(rt)
        self.fn = self.value = None
        for index in range(count):
            yield fn.call(value.items[0] if value.all_equal else value.items[index], rt)


def _federated_aggregate(uri, type_spec):
    value_type, zero_type = type_spec.parameter[0], type_spec.parameter[1]
    rows_type = _stacked_rows_type(zero_type)
    row_axes = _row_axes(rows_type, value_type.member, uri) if rows_type is not None else None

    def body(arg, rt):
        value, zero, accumulate, _merge, report = (arg[i] for i in range(5))
        if row_axes is not None:
            if isinstance(value, _MappedLater):
                rows = _stream_rows(uri, rows_type, zero[0], value, rt)
            else:
                rows = _concat_rows(rows_type, zero[0], value.members(rt.clients), iter(row_axes))
            return _server(report.call(structure.Struct([(STACKED_ROWS, rows)]), rt))
        accumulated = zero
        call = accumulate.call
        for member in value.members(rt.clients):
            accumulated = call(structure.Struct([(None, accumulated), (None, member)]), rt)
        return _server(report.call(accumulated, rt))

    return _fn(uri, body)


def _sum_of(members, member_type):
    if not members:
        return _zeros(member_type)
    total = members[0]
    for m in members[1:]:
        total = _map_structure(tf.add, member_type, total, m)
    return total


def _federated_sum(uri, type_spec):
    member_type = type_spec.result.member

    def body(value, rt):
        return _server(_sum_of(value.members(rt.clients), member_type))

    return _fn(uri, body)


def _federated_mean(uri, type_spec):
    member_type = type_spec.result.member

    def body(value, rt):
        members = value.members(rt.clients)
        total = _sum_of(members, member_type)
        count = len(members)
        return _server(_map_structure(lambda t: tf.math.divide(t, tf.cast(count, tf.convert_to_tensor(t).dtype)),
                                      member_type, total))

    return _fn(uri, body)


def _federated_weighted_mean(uri, type_spec):
    member_type = type_spec.result.member

    def body(arg, rt):
        value, weight = arg[0], arg[1]
        count = _first_count([value, weight], rt)
        values, weights = value.members(count), weight.members(count)
        if not values:
            return _server(_zeros(member_type))
        weighted = [
            _map_structure(lambda t, w=w: tf.multiply(t, tf.cast(w, tf.convert_to_tensor(t).dtype)), member_type, v)
            for v, w in zip(values, weights)
        ]
        total = _sum_of(weighted, member_type)
        weight_total = weights[0]
        for w in weights[1:]:
            weight_total = tf.add(weight_total, w)
        return _server(_map_structure(
            lambda t: tf.math.divide_no_nan(t, tf.cast(weight_total, tf.convert_to_tensor(t).dtype)),
            member_type, total))

    return _fn(uri, body)


def _federated_reduce_elementwise(op):
    def make(uri, type_spec):
        member_type = type_spec.result.member

        def body(value, rt):
            members = value.members(rt.clients)
            if not members:
                raise LocalExecutionError(f"{uri} over no clients")
            total = members[0]
            for m in members[1:]:
                total = _map_structure(op, member_type, total, m)
            return _server(total)

        return _fn(uri, body)

    return make


def _generic_binary(op):
    def make(uri, type_spec):
        operand_type = type_spec.result

        def body(arg, rt):
            return _map_structure(op, operand_type, arg[0], arg[1])

        return _fn(uri, body)

    return make


def _generic_zero(uri, type_spec):
    return _zeros(type_spec)


def _sequence_elements(dataset, element_type):
    return [_from_dataset_element(e, element_type) for e in dataset]


def _sequence_reduce(uri, type_spec):
    element_type = type_spec.parameter[0].element

    def body(arg, rt):
        dataset, zero, op = arg[0], arg[1], arg[2]
        accumulated = zero
        for element in _sequence_elements(dataset, element_type):
            accumulated = op.call(structure.Struct([(None, accumulated), (None, element)]), rt)
        return accumulated

    return _fn(uri, body)


def _sequence_sum(uri, type_spec):
    element_type = type_spec.parameter.element

    def body(dataset, rt):
        return _sum_of(_sequence_elements(dataset, element_type), element_type)

    return _fn(uri, body)


def _sequence_map(uri, type_spec):
    element_type = type_spec.parameter[1].element
    result_element = type_spec.result.element

    def body(arg, rt):
        from tensorflow_federated.python.core.impl.utils import tensorflow_utils

        fn, dataset = arg[0], arg[1]
        mapped = [_to_python(fn.call(e, rt), result_element) for e in _sequence_elements(dataset, element_type)]
        return tensorflow_utils.make_data_set_from_elements(None, mapped, result_element)

    return _fn(uri, body)


_INTRINSICS = {
    "federated_map": _federated_map,
    "federated_map_all_equal": _federated_map,
    "federated_apply": _federated_apply,
    "federated_broadcast": _federated_broadcast,
    "federated_value_at_clients": _federated_value(placements.CLIENTS),
    "federated_value_at_server": _federated_value(placements.SERVER),
    "federated_eval_at_clients": _federated_eval(placements.CLIENTS),
    "federated_eval_at_server": _federated_eval(placements.SERVER),
    "federated_zip_at_clients": _federated_zip(placements.CLIENTS),
    "federated_zip_at_server": _federated_zip(placements.SERVER),
    "federated_aggregate": _federated_aggregate,
    "federated_sum": _federated_sum,
    "federated_mean": _federated_mean,
    "federated_weighted_mean": _federated_weighted_mean,
    "federated_min": _federated_reduce_elementwise(tf.minimum),
    "federated_max": _federated_reduce_elementwise(tf.maximum),
    "generic_zero": _generic_zero,
    "generic_plus": _generic_binary(tf.add),
    "generic_multiply": _generic_binary(tf.multiply),
    "generic_divide": _generic_binary(tf.math.divide),
    "sequence_reduce": _sequence_reduce,
    "sequence_sum": _sequence_sum,
    "sequence_map": _sequence_map,
}

SUPPORTED_INTRINSICS = frozenset(_INTRINSICS)

UNSUPPORTED_INTRINSICS = {
    "federated_secure_sum": "secure aggregation is not simulated in-process",
    "federated_secure_sum_bitwidth": "secure aggregation is not simulated in-process",
    "federated_secure_modular_sum": "secure aggregation is not simulated in-process",
    "federated_select": "federated select is not implemented",
    "federated_secure_select": "federated select is not implemented",
}


# --------------------------------------------------------------------------
# Building blocks: a computation proto compiled once to Python closures
# ``evaluate(env, rt)``.


def _compile(proto: computation_pb2.Computation):
    which = proto.WhichOneof("computation")
    if which == "tensorflow":
        function = _tensorflow_function(proto)
        return lambda env, rt: function
    if which == "lambda":
        name = getattr(proto, "lambda").parameter_name
        body = _compile(getattr(proto, "lambda").result)
        return lambda env, rt: _Lambda(name, body, env)
    if which == "block":
        streamed = _streamed_maps(proto.block)
        locals_ = [
            (local.name, (_compile_mapped_later if index in streamed else _compile)(local.value), dead)
            for index, (local, dead) in enumerate(zip(proto.block.local, _dead_after(proto.block)))
        ]
        result = _compile(proto.block.result)

        def block(env, rt):
            for name, value, dead in locals_:
                value = value(env, rt)
                env = dict(env)
                env[name] = value
                for gone in dead:  # no later local nor the result reads them: let them be freed
                    del env[gone]
            return result(env, rt)

        return block
    if which == "reference":
        name = proto.reference.name

        def reference(env, rt):
            try:
                return env[name]
            except KeyError:
                raise LocalExecutionError(f"unbound reference {name!r}") from None

        return reference
    if which == "call":
        function = _compile(proto.call.function)
        if proto.call.HasField("argument"):
            argument = _compile(proto.call.argument)

            def call(env, rt):
                fn = function(env, rt)
                if not isinstance(fn, _Function):
                    raise LocalExecutionError(f"call of a value that is not a function: {fn!r}")
                return fn.call(argument(env, rt), rt)

            return call

        def call_without_argument(env, rt):
            fn = function(env, rt)
            if not isinstance(fn, _Function):
                raise LocalExecutionError(f"call of a value that is not a function: {fn!r}")
            return fn.call(None, rt)

        return call_without_argument
    if which == "struct":
        elements = [(element.name or None, _compile(element.value)) for element in proto.struct.element]
        return lambda env, rt: structure.Struct([(name, value(env, rt)) for name, value in elements])
    if which == "selection":
        source = _compile(proto.selection.source)
        index = proto.selection.index
        return lambda env, rt: source(env, rt)[index]
    if which == "literal":
        value = tff_array.from_proto(proto.literal.value)
        type_spec = type_serialization.deserialize_type(proto.type)
        value = _tensor_in(value, type_spec) if isinstance(type_spec, computation_types.TensorType) else value
        return lambda env, rt: value
    if which == "placement":
        literal = placements.uri_to_placement_literal(proto.placement.uri)
        return lambda env, rt: literal
    if which == "intrinsic":
        uri = proto.intrinsic.uri
        value = _intrinsic(uri, type_serialization.deserialize_type(proto.type))
        return lambda env, rt: value
    if which == "data":
        value = _data_value(proto)
        return lambda env, rt: value
    raise UnsupportedComputationError(f"LocalExecutor does not support the building block {which!r}")


def _references(proto):
    """Every name that a reference in ``proto`` reads, once per reference.
    Inner bindings that shadow a name are not told apart, so a value is at
    worst kept alive longer than needed (or not streamed), never dropped or
    consumed while still read."""
    which = proto.WhichOneof("computation")
    if which == "reference":
        yield proto.reference.name
    elif which == "lambda":
        yield from _references(getattr(proto, "lambda").result)
    elif which == "block":
        for local in proto.block.local:
            yield from _references(local.value)
        yield from _references(proto.block.result)
    elif which == "call":
        yield from _references(proto.call.function)
        if proto.call.HasField("argument"):
            yield from _references(proto.call.argument)
    elif which == "struct":
        for element in proto.struct.element:
            yield from _references(element.value)
    elif which == "selection":
        yield from _references(proto.selection.source)
    # the other building blocks read no name


def _intrinsic_call(proto, uri: str):
    """The intrinsic's type if ``proto`` calls the intrinsic ``uri`` itself, else None."""
    if proto.WhichOneof("computation") != "call":
        return None
    function = proto.call.function
    if function.WhichOneof("computation") != "intrinsic" or function.intrinsic.uri != uri:
        return None
    return type_serialization.deserialize_type(function.type)


def _streamed_maps(block) -> set:
    """Indices of the locals of ``block`` that the block evaluates as a
    `_MappedLater`: a CLIENTS ``federated_map`` whose one reader (in the
    rest of the block) is a later local's streamable `STACKED_ROWS`
    ``federated_aggregate``, of which it is the value argument itself.  The
    map's members are then computed as the aggregate stacks them (its
    function runs later than the block order says: a TensorFlow
    computation has no effect besides its result)."""
    streamed = set()
    for index, local in enumerate(block.local):
        aggregate = _intrinsic_call(local.value, "federated_aggregate")
        argument = local.value.call.argument if aggregate is not None else None
        if argument is None or argument.WhichOneof("computation") != "struct" or not argument.struct.element \
                or argument.struct.element[0].value.WhichOneof("computation") != "reference":
            continue
        rows_type = _stacked_rows_type(aggregate.parameter[1])
        if rows_type is None or not _streamable(rows_type, _row_axes(rows_type, aggregate.parameter[0].member,
                                                                     "federated_aggregate")):
            continue
        name = argument.struct.element[0].value.reference.name
        bound = [i for i in range(index) if block.local[i].name == name]
        if not bound:
            continue  # not bound by this block
        mapped = _intrinsic_call(block.local[bound[-1]].value, "federated_map")
        if mapped is None or mapped.result.placement is not placements.CLIENTS or mapped.result.all_equal:
            continue
        readers = [*(local.value for local in block.local[bound[-1] + 1:]), block.result]
        if sum(reference == name for reader in readers for reference in _references(reader)) == 1:
            streamed.add(bound[-1])
    return streamed


def _compile_mapped_later(proto):
    """A local of `_streamed_maps`: its ``federated_map``'s function and
    value, the calls left to the aggregate."""
    argument = _compile(proto.call.argument)

    def mapped_later(env, rt):
        arg = argument(env, rt)
        return _MappedLater(arg[0], arg[1])

    return mapped_later


def _dead_after(block) -> list:
    """For each local of ``block``, the block's names that no later local
    and not the result reads: the block drops them from its environment
    once that local is computed, so that a large value (the clients' update
    rows) is freed once consumed, not when the whole block ends.  Only a
    name's last binding is dropped; an earlier one is freed by the next."""
    count = len(block.local)
    last_reader = dict.fromkeys(_references(block.result), count)
    dead: list = [[] for _ in range(count)]
    bound: set = set()
    for index in reversed(range(count)):
        local = block.local[index]
        if local.name not in bound:
            bound.add(local.name)
            reader = last_reader.get(local.name, index)
            if reader < count:
                dead[reader].append(local.name)
        for name in set(_references(local.value)):
            last_reader.setdefault(name, index)
    return [sorted(names) for names in dead]


def _data_value(proto):
    """A ``data`` building block whose content is a serialized executor
    value (the only kind of data a worker without a data backend has)."""
    content = proto.data.content
    type_spec = type_serialization.deserialize_type(proto.type)
    if content.Is(executor_pb2.Value.DESCRIPTOR):
        from tensorflow_federated.python.core.impl.executors import value_serialization

        message = executor_pb2.Value()
        content.Unpack(message)
        value, _ = value_serialization.deserialize_value(message, type_spec)
        return _value_in(value, type_spec)
    raise UnsupportedComputationError(
        f"LocalExecutor does not support the building block 'data' with content {content.type_url or '(empty)'!r} "
        "(no data backend)"
    )


_computation_cache: "OrderedDict[int, tuple]" = OrderedDict()
_COMPUTATION_CACHE_SIZE = 256


def _compiled(proto: computation_pb2.Computation):
    """``proto`` compiled, cached by the proto object (TFF's compiler cache
    hands the same compiled computation back on every call)."""
    key = id(proto)
    with _lock:
        found = _computation_cache.get(key)
        if found is not None and found[0] is proto:
            _computation_cache.move_to_end(key)
            return found[1]
        compiled = _compile(proto)
        _computation_cache[key] = (proto, compiled)
        while len(_computation_cache) > _COMPUTATION_CACHE_SIZE:
            _computation_cache.popitem(last=False)
        return compiled


# --------------------------------------------------------------------------
# The executor


class LocalValue(executor_value_base.ExecutorValue):
    """A value held by `LocalExecutor`."""

    __slots__ = ("_value", "_type_signature", "_clients")

    def __init__(self, value, type_signature, clients: int = 0):
        self._value = value
        self._type_signature = type_signature
        self._clients = clients  # the number of CLIENTS an all-equal value stands for

    @property
    def type_signature(self):
        return self._type_signature

    @property
    def value(self):
        return self._value

    @property
    def reference(self):
        return self._value

    async def compute(self):
        return _value_out(self._value, self._type_signature, self._clients)


class LocalExecutor(executor_base.Executor):
    """Evaluates compiled TFF computations in this process; see the module's
    documentation."""

    def __init__(self, cardinalities: Mapping | None = None):
        self._runtime = _Runtime(0)
        if cardinalities:
            self.set_cardinalities(cardinalities)

    def set_cardinalities(self, cardinalities: Mapping) -> None:
        self._runtime = _Runtime(int(cardinalities.get(placements.CLIENTS, 0)))

    @property
    def clients(self) -> int:
        return self._runtime.clients

    async def create_value(self, value, type_spec=None):
        if isinstance(value, computation_impl.ConcreteComputation):
            proto = computation_impl.ConcreteComputation.get_proto(value)
            return LocalValue(_compiled(proto)({}, self._runtime), type_spec or value.type_signature,
                              self._runtime.clients)
        if isinstance(value, computation_pb2.Computation):
            type_spec = type_spec or type_serialization.deserialize_type(value.type)
            return LocalValue(_compiled(value)({}, self._runtime), type_spec, self._runtime.clients)
        if isinstance(value, LocalValue):
            return value
        if type_spec is None:
            raise TypeError("LocalExecutor.create_value needs a type for a value that is not a computation")
        type_spec = computation_types.to_type(type_spec)
        return LocalValue(_value_in(value, type_spec), type_spec, self._runtime.clients)

    async def create_call(self, comp, arg=None):
        if not isinstance(comp, LocalValue) or not isinstance(comp.value, _Function):
            raise TypeError(f"LocalExecutor.create_call of a value that is not a function: {comp!r}")
        result = comp.value.call(arg.value if arg is not None else None, self._runtime)
        return LocalValue(result, comp.type_signature.result, self._runtime.clients)

    async def create_struct(self, elements):
        elements = structure.to_elements(structure.from_container(elements))
        for _, v in elements:
            if not isinstance(v, LocalValue):
                raise TypeError(f"LocalExecutor.create_struct of a value it does not hold: {v!r}")
        return LocalValue(
            structure.Struct([(name, v.value) for name, v in elements]),
            computation_types.StructType([(name, v.type_signature) if name else v.type_signature
                                          for name, v in elements]),
            self._runtime.clients,
        )

    async def create_selection(self, source, index):
        if not isinstance(source, LocalValue):
            raise TypeError(f"LocalExecutor.create_selection of a value it does not hold: {source!r}")
        return LocalValue(source.value[index], source.type_signature[index], self._runtime.clients)

    def close(self):
        pass


# --------------------------------------------------------------------------
# Contexts


def local_context():
    """A synchronous TFF execution context over `LocalExecutor`, compiled as
    fedarena's worker context is (``desugar_and_transform_to_native``)."""
    from tensorflow_federated.python.core.backends.native import compiler
    from tensorflow_federated.python.core.environments.tensorflow_frontend import tensorflow_computation
    from tensorflow_federated.python.core.impl.execution_contexts import sync_execution_context
    from tensorflow_federated.python.core.impl.executor_stacks import python_executor_stacks

    _enable_memory_growth()

    def stack_fn(cardinalities):
        cardinalities.setdefault(placements.CLIENTS, 0)
        return LocalExecutor(cardinalities)

    return sync_execution_context.SyncExecutionContext(
        executor_fn=python_executor_stacks.ResourceManagingExecutorFactory(executor_stack_fn=stack_fn),
        compiler_fn=compiler.desugar_and_transform_to_native,
        transform_args=tensorflow_computation.transform_args,
        transform_result=tensorflow_computation.transform_result,
    )


@contextlib.contextmanager
def local_backend():
    """Install the local context on TFF's context stack for the block;
    yields the context."""
    from tensorflow_federated.python.core.impl.context_stack import context_stack_impl

    context = local_context()
    with context_stack_impl.context_stack.install(context):
        yield context
