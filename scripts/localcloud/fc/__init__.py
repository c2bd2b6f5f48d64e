"""A local Function Compute 3.0 (Python built-in runtimes), laid out like the local DataWorks.

    runtime.py     the runtime contract: the context of python3.10 and python3.12, the variables FC
                   sets, the checks on a function's settings, an invocation's answer and errors
    logstore.py    the local Logstore: a function's log lines as JSON lines
    capture.py     in this process, each invocation's stdout/stderr, attributed by thread
    harness.py     FunctionCompute: one instance in this process, for unit-level tests
    instances.py   one instance as FC runs it: its own OS process, one invocation at a time
    function.py    Function: a function's instances under reservedConcurrency, its asynchronous
                   queue, delays and task ids, FC's retries (the backend, as models.py is moto's)
    exceptions.py  FC's refusals, one class per error code
    responses.py   the OpenAPI on the wire: InvokeFunction's headers and answers
    faults.py      refusals injected into the OpenAPI
    auth.py        FC's signature rules (the HTTP trigger's authType function; FC's query
                   canonicalisation for the OpenAPI)
    server.py      FunctionComputeApi: the OpenAPI on loopback (localcloud.loopback)
    timer.py       TimerTrigger: FC's timer trigger on a function's clock

`from localcloud.fc import Function` works for each name below, but loads its module only then:
an instance process imports `localcloud.fc.instances` and must not pay, at every cold start, for
the HTTP server and signature code it never uses.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FunctionCompute": "harness",
    "Function": "function",
    "AsyncInvocation": "function",
    "FunctionComputeApi": "server",
    "Invocation": "runtime",
    "CONTEXT_SHAPES": "runtime",
    "Logstore": "logstore",
    "TimerTrigger": "timer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
