"""fedarena's one door into TFF's private modules (``tensorflow_federated.python...``).

TFF 0.87 offers no public way to build an execution context over executor
services that fedarena starts and owns, nor to install one, nor to run a
computation from another thread; this module does those three things and
nothing else, so that a TFF upgrade that moves them breaks one file.
(`fedarena.core.execution.backends.local`, the in-process executor, is the
other module allowed to reach into TFF, since it implements TFF's executor
interface.)

  `remote_stub`         a gRPC stub for one executor service (``worker_binary``);
  `execution_context`   a synchronous context over one or several stubs;
  `installed`           a context made current for a block;
  `call_interruptibly`  a computation called so that Ctrl-C and SIGTERM still
                        reach the main thread.
"""

from __future__ import annotations

import contextlib
import threading

from fedarena.core.execution import interrupts


def remote_stub(channel):
    """TFF's remote-executor stub over a gRPC channel (``.is_ready`` says
    whether the service answers)."""
    from tensorflow_federated.python.core.impl.executors import remote_executor_grpc_stub

    return remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel)


def execution_context(stubs):
    """A synchronous TFF execution context over remote executor stubs.

    One stub gives TFF's ordinary context; several give the mergeable-
    computation context, which splits the clients of a call across them.
    """
    from tensorflow_federated.python.core.backends.native import compiler, mergeable_comp_compiler
    from tensorflow_federated.python.core.environments.tensorflow_frontend import tensorflow_computation
    from tensorflow_federated.python.core.impl.execution_contexts import (
        async_execution_context,
        mergeable_comp_execution_context,
        sync_execution_context,
    )
    from tensorflow_federated.python.core.impl.executor_stacks import python_executor_stacks
    from tensorflow_federated.python.core.impl.executors import remote_executor
    from tensorflow_federated.python.core.impl.types import placements

    def factory_for(stub):
        def stack_fn(cardinalities):
            # A call with no CLIENTS argument still needs a cardinality.
            cardinalities.setdefault(placements.CLIENTS, 0)
            executor = remote_executor.RemoteExecutor(stub)
            executor.set_cardinalities(cardinalities)
            return executor

        return python_executor_stacks.ResourceManagingExecutorFactory(executor_stack_fn=stack_fn)

    common = dict(
        transform_args=tensorflow_computation.transform_args,
        transform_result=tensorflow_computation.transform_result,
    )
    if len(stubs) == 1:
        return sync_execution_context.SyncExecutionContext(
            executor_fn=factory_for(stubs[0]), compiler_fn=compiler.desugar_and_transform_to_native, **common
        )
    async_contexts = [
        async_execution_context.AsyncExecutionContext(
            executor_fn=factory_for(stub), compiler_fn=compiler.transform_to_native_form, **common
        )
        for stub in stubs
    ]
    return mergeable_comp_execution_context.MergeableCompExecutionContext(
        async_contexts=async_contexts, compiler_fn=mergeable_comp_compiler.compile_to_mergeable_comp_form
    )


def current_context():
    """The TFF context current in this thread."""
    from tensorflow_federated.python.core.impl.context_stack import context_stack_impl

    return context_stack_impl.context_stack.current


@contextlib.contextmanager
def installed(context):
    """Make ``context`` TFF's current context (in this thread) for the block."""
    from tensorflow_federated.python.core.impl.context_stack import context_stack_impl

    with context_stack_impl.context_stack.install(context):
        yield context


def call_interruptibly(function, *args, watch=None):
    """Call a TFF computation so that Ctrl-C and SIGTERM still reach us.

    TFF's synchronous context waits on a future with no timeout; a signal
    that the kernel delivers to one of gRPC's threads then never wakes the
    main thread.  The call runs in a daemon thread instead, and the main
    thread waits in short slices, checking for a stop request (and, with
    ``watch``, the workers' health: ``watch.check()``) between them.  TFF's
    context stack is per thread, so the caller's context is installed in
    the helper thread.
    """
    context = current_context()
    outcome: dict = {}

    def target():
        try:
            with installed(context):
                outcome["value"] = function(*args)
        except BaseException as error:  # handed to the main thread below
            outcome["error"] = error

    thread = threading.Thread(target=target, name="fedarena-tff-call", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
        interrupts.check()
        if watch is not None:
            watch.check()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
