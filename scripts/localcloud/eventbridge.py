"""A local EventBridge rule with a Function Compute target, for the event function.

A rule on an Alibaba Cloud service source delivers in event-driven mode: one CloudEvent per
invocation, invoked asynchronously. FC then owns the event: it queues it, runs it on an instance
when one is free (at most reservedConcurrency at once), and retries an invocation that raised or
timed out (`maxAsyncRetryAttempts`, default 3, 0-8). Delivery is at least once (`duplicate=True`
delivers the same bytes twice, as two invocations).

The target is either
- a `localcloud.fc.function.Function` (the process model: one process per instance):
  `deliver()` puts the event into the function's asynchronous queue and returns the handles;
  `publish()` does the same and waits until FC is done with each copy, returning every attempt;
- or the in-process `localcloud.fc.harness.FunctionCompute` (one instance, for unit-level tests):
  `publish()` invokes it and retries at once, one attempt after the other (`max_retries`).
`publish_batch()` is one synchronous invocation with a JSON array, on either. `matches()` is
EventBridge's event-pattern matcher, shared with the deployment tests that check template.yml's
rule against the samples.

`push_sync()` is the other reading of an FC trigger's `asyncInvocationType` (FC 2.0's page said
`false` means synchronous): one synchronous invocation per push; a push the function throttles
(every instance `reservedConcurrency` allows busy: FC's 429) fails, and EventBridge pushes it
again under the rule's PushRetryStrategy (BACKOFF_RETRY: 3 retries; EXPONENTIAL_DECAY_RETRY: 176
over a day), so the event is not lost while the retries last.

Sources: FACTS sections 1 and 5; EventBridge "Event patterns" (help.aliyun.com/en/eventbridge/
user-guide/event-patterns): a pattern has the event's nesting, each leaf is a list of allowed
values or operators (prefix, suffix, contains, anything-but [+ prefix/suffix], numeric, cidr,
exists), any one of which may match; a field the pattern names must exist unless
`{"exists": false}`. The page documents an exact value as a **string** ("Field equals the
specified string") and numbers through `numeric`; an exact value of another JSON type (a bare
number such as `"status": [5]`, true, null) is not documented, so this matcher refuses it rather
than guess what EventBridge does with it. When the event's value is a list, any element may
match [the AWS rule, which the Alibaba page does not contradict].
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Any

from localcloud.fc.exceptions import ConcurrencyExceeded
from localcloud.fc.function import MAX_ASYNC_RETRIES, AsyncInvocation, Function
from localcloud.fc.harness import FunctionCompute
from localcloud.fc.runtime import Invocation, new_request_id

SCHEMAS = ("CloudEvents", "RawData")
# EventBridge's push retries after the first push (its retry page: BACKOFF_RETRY retries 3 times
# 10-20 s apart; EXPONENTIAL_DECAY_RETRY 176 times over a day).
PUSH_RETRIES = {"BACKOFF_RETRY": 3, "EXPONENTIAL_DECAY_RETRY": 176}
_MISSING = object()


class EventBridge:
    """Delivers events to one function through one rule (optional filter pattern)."""

    def __init__(
        self, fn: Function | FunctionCompute, filter_pattern: Mapping | None = None, max_retries: int | None = None
    ):
        if isinstance(fn, Function):
            if max_retries is not None:
                raise ValueError(
                    "max_retries belongs to the function (its maxAsyncRetryAttempts): "
                    "set max_async_retry_attempts on the Function instead"
                )
            max_retries = fn.max_async_retry_attempts
        elif max_retries is None:
            max_retries = 3  # FC's default maxAsyncRetryAttempts
        if not 0 <= max_retries <= MAX_ASYNC_RETRIES:
            raise ValueError(
                f"max_retries must be 0..{MAX_ASYNC_RETRIES} (FC's maxAsyncRetryAttempts), got {max_retries}"
            )
        if filter_pattern is not None:
            matches(filter_pattern, {})  # a malformed pattern fails here, not on the first event
        self.fn = fn
        self.filter_pattern = filter_pattern
        self.max_retries = max_retries

    def deliver(self, event: Mapping, schema: str = "CloudEvents", duplicate: bool = False) -> list[AsyncInvocation]:
        """Put the event into the function's asynchronous queue (twice with `duplicate`) and return
        at once, with a handle per copy; [] when the rule's pattern does not match it."""
        if not isinstance(self.fn, Function):
            raise TypeError(
                "the in-process FunctionCompute has no asynchronous queue: deliver to a "
                "localcloud.fc.function.Function, or use publish()"
            )
        payload = self.payload(event, schema)
        if payload is None:
            return []
        return [self.fn.invoke_async(payload) for _ in range(2 if duplicate else 1)]

    def publish(self, event: Mapping, schema: str = "CloudEvents", duplicate: bool = False) -> list[Invocation]:
        """Deliver one event and wait until FC is done with it; return every attempt (retries and
        the duplicate included), or [] when the rule's pattern does not match it."""
        if isinstance(self.fn, Function):
            handles = self.deliver(event, schema, duplicate)
            budget = (1 + self.max_retries) * (self.fn.timeout + 30) * len(handles)
            for handle in handles:
                if not handle.wait(budget):
                    raise TimeoutError(f"invocation {handle.request_id} still {handle.status} after {budget} s")
            return [attempt for handle in handles for attempt in handle.attempts]
        payload = self.payload(event, schema)
        if payload is None:
            return []
        attempts = self._deliver_in_process(payload)
        if duplicate:
            attempts += self._deliver_in_process(payload)
        return attempts

    def push_sync(
        self,
        event: Mapping,
        strategy: str = "EXPONENTIAL_DECAY_RETRY",
        schema: str = "CloudEvents",
        between_pushes=None,
    ) -> SyncPush:
        """Push one event as one synchronous invocation (a `Function` target), as a trigger whose
        asyncInvocationType means synchronous would. A push FC throttles (ConcurrencyExceeded, 429)
        is pushed again, up to the strategy's retries; `between_pushes(n)` runs before retry n (a
        test seam standing for EventBridge's wait). A push that reached the function is delivered,
        whatever the handler answered (a synchronous invocation is never retried by FC)."""
        if not isinstance(self.fn, Function):
            raise TypeError("push_sync models FC's throttling of a Function (process model) target")
        if strategy not in PUSH_RETRIES:
            raise ValueError(f"strategy must be one of {sorted(PUSH_RETRIES)}, got {strategy!r}")
        payload = self.payload(event, schema)
        push = SyncPush()
        if payload is None:
            return push
        for n in range(1 + PUSH_RETRIES[strategy]):
            if n and between_pushes is not None:
                between_pushes(n)
            try:
                push.invocation = self.fn.invoke(payload)
            except ConcurrencyExceeded:
                push.throttled += 1
                continue
            return push
        push.dropped = True  # to the dead-letter queue, if the rule has one
        return push

    def publish_batch(self, events: Iterable[Mapping], schema: str = "CloudEvents") -> list[Invocation]:
        """Send the matching events as one JSON array in one synchronous invocation, as
        event-streaming (queue) triggers and `s invoke -f <array>.json` do. No retries."""
        items = []
        for event in events:
            if self.filter_pattern is None or matches(self.filter_pattern, event):
                items.append(_shape(event, schema))
        if not items:
            return []
        return [self.fn.invoke(_encode(items))]

    def payload(self, event: Mapping, schema: str = "CloudEvents") -> bytes | None:
        """The bytes the target receives for this event, or None if the rule filters it out."""
        if not isinstance(event, Mapping):
            raise TypeError(f"an event must be a JSON object (dict), got {type(event).__name__}")
        if self.filter_pattern is not None and not matches(self.filter_pattern, event):
            return None
        return _encode(_shape(event, schema))

    def _deliver_in_process(self, payload: bytes) -> list[Invocation]:
        # FC keeps the request id of an asynchronous invocation across its retries [inferred].
        request_id = new_request_id()
        attempts = []
        for _ in range(1 + self.max_retries):
            attempt = self.fn.invoke(payload, request_id=request_id)
            attempts.append(attempt)
            if attempt.error is None:  # a normal return is success, whatever it returned
                break
        return attempts


class SyncPush:
    """What EventBridge's synchronous pushes of one event came to."""

    def __init__(self):
        self.throttled = 0  # pushes FC refused with 429 (every allowed instance busy)
        self.invocation: Invocation | None = None  # the push that reached the function
        self.dropped = False  # every retry throttled: the event goes to the dead-letter queue

    @property
    def delivered(self) -> bool:
        return self.invocation is not None


def _shape(event: Mapping, schema: str) -> Any:
    if schema not in SCHEMAS:
        raise ValueError(f"schema must be one of {SCHEMAS}, got {schema!r}")
    if schema == "RawData":
        if "data" not in event:
            raise ValueError("RawData delivers the event's 'data', and this event has none")
        return event["data"]
    return dict(event)


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- event patterns ------------------------------------------------------------------------------


def matches(pattern: Mapping, event: Any) -> bool:
    """Whether EventBridge would route `event` through a rule with this event pattern.

    Raises ValueError naming the place when the pattern itself is malformed."""
    if not isinstance(pattern, Mapping):
        raise ValueError(f"an event pattern must be a JSON object, got {type(pattern).__name__}")
    return _match_object(pattern, event, path="")


def _match_object(pattern: Mapping, event: Any, path: str) -> bool:
    result = True
    # Every field is checked even after a miss, so a malformed pattern is always reported.
    for key, rule in pattern.items():
        where = f"{path}.{key}" if path else str(key)
        value = event.get(key, _MISSING) if isinstance(event, Mapping) else _MISSING
        if isinstance(rule, Mapping):
            inner = _match_object(rule, value, where)
            ok = value is not _MISSING and inner
        elif isinstance(rule, list):
            if not rule:
                raise ValueError(f"pattern field {where!r} is an empty list: it could match nothing")
            ok = any([_match_leaf(matcher, value, where) for matcher in rule])
        else:
            raise ValueError(f"pattern field {where!r} must be a list of values or a nested object")
        result = result and ok
    return result


def _match_leaf(matcher: Any, value: Any, where: str) -> bool:
    if isinstance(matcher, Mapping):
        if len(matcher) != 1:
            raise ValueError(f"pattern field {where!r}: an operator object has exactly one key, got {list(matcher)}")
        ((op, arg),) = matcher.items()
        if op == "exists":
            if not isinstance(arg, bool):
                raise ValueError(f"pattern field {where!r}: 'exists' takes true or false")
            return (value is not _MISSING) is arg
        check = _OPERATORS.get(op)
        if check is None:
            raise ValueError(f"pattern field {where!r}: unknown operator {op!r}")
        if value is _MISSING:
            check(arg, None, where)  # still validate the argument
            return False
        return any(check(arg, v, where) for v in _values(value))
    if isinstance(matcher, list):
        raise ValueError(f"pattern field {where!r}: lists do not nest")
    if not isinstance(matcher, str):
        raise ValueError(
            f"pattern field {where!r}: an exact value is documented for strings only, got {matcher!r}; "
            'match a number with {"numeric": ["=", n]} (EventBridge "Event patterns")'
        )
    if value is _MISSING:
        return False
    return any(_equal(matcher, v) for v in _values(value))


def _values(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _equal(a: Any, b: Any) -> bool:
    # JSON types, not Python's: true is not 1, and "5" is not 5.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _text_arg(op: str, arg: Any, where: str) -> str:
    if not isinstance(arg, str):
        raise ValueError(f"pattern field {where!r}: {op!r} takes a string")
    return arg


def _prefix(arg, value, where):
    arg = _text_arg("prefix", arg, where)
    return isinstance(value, str) and value.startswith(arg)


def _suffix(arg, value, where):
    arg = _text_arg("suffix", arg, where)
    return isinstance(value, str) and value.endswith(arg)


def _contains(arg, value, where):
    arg = _text_arg("contains", arg, where)
    return isinstance(value, str) and arg in value


def _anything_but(arg, value, where):
    if isinstance(arg, Mapping):
        if len(arg) != 1 or next(iter(arg)) not in ("prefix", "suffix"):
            raise ValueError(f"pattern field {where!r}: 'anything-but' takes a value, a list, or prefix/suffix")
        ((op, inner),) = arg.items()
        return value is not None and not _OPERATORS[op](inner, value, where)
    excluded = arg if isinstance(arg, list) else [arg]
    return value is not None and not any(_equal(x, value) for x in excluded)


_COMPARE = {
    "=": lambda a, b: a == b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _numeric(arg, value, where):
    if not isinstance(arg, list) or not arg or len(arg) % 2:
        raise ValueError(f"pattern field {where!r}: 'numeric' takes [op, number, ...], like ['>', 0, '<=', 5]")
    pairs = list(zip(arg[::2], arg[1::2], strict=True))
    for op, bound in pairs:
        if op not in _COMPARE or not _is_number(bound):
            raise ValueError(f"pattern field {where!r}: bad numeric comparison {op!r} {bound!r}")
    return _is_number(value) and all(_COMPARE[op](value, bound) for op, bound in pairs)


def _cidr(arg, value, where):
    try:
        network = ipaddress.IPv4Network(_text_arg("cidr", arg, where), strict=False)
    except ValueError:
        raise ValueError(f"pattern field {where!r}: 'cidr' takes an IPv4 block like 10.0.0.0/24") from None
    try:
        return isinstance(value, str) and ipaddress.IPv4Address(value) in network
    except ValueError:
        return False


_OPERATORS = {
    "prefix": _prefix,
    "suffix": _suffix,
    "contains": _contains,
    "anything-but": _anything_but,
    "numeric": _numeric,
    "cidr": _cidr,
}


# --- EventBridge's OpenAPI (2020-04-01), for `make verify` (localcloud.controlplane serves it) ----
#
# GetRule, ListTargets and TestEventPattern as EventBridge answers them (RPC style; the official
# alibabacloud_eventbridge20200401 SDK's Params; the answers' shapes from its models): a rule on a
# bus, its status (ENABLE | DISABLE), its pattern (a JSON string in the answer) and its targets.
# TestEventPattern runs `matches()` above: a pattern that page does not document is an error here.


class EventBridgeApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class RuleBackend:
    """The rules of an account's buses, keyed by (bus, rule name)."""

    def __init__(self):
        self.rules: dict[tuple[str, str], dict] = {}

    def put_rule(self, bus: str, name: str, pattern: Mapping, targets: list[dict], status: str = "ENABLE") -> None:
        self.rules[(bus, name)] = {
            "EventBusName": bus,
            "RuleName": name,
            "Status": status,
            "FilterPattern": dict(pattern),
            "Targets": [dict(t) for t in targets],
        }

    def handle(self, action: str, params: Mapping[str, str]) -> dict:
        if action == "TestEventPattern":
            try:
                pattern, event = json.loads(params.get("EventPattern", "")), json.loads(params.get("Event", ""))
                result = matches(pattern, event)
            except (ValueError, TypeError) as exc:
                raise EventBridgeApiError(400, "EventPatternInvalid", str(exc)[:300]) from None
            return {"Code": "Success", "Success": True, "Data": {"Result": result}}
        if action in ("GetRule", "ListTargets"):
            rule = self.rules.get((params.get("EventBusName", ""), params.get("RuleName", "")))
            if rule is None:
                raise EventBridgeApiError(404, "EventRuleNotExisted", "The event rule does not exist.")
            targets = [dict(t) for t in rule["Targets"]]
            if action == "ListTargets":
                return {"Code": "Success", "Success": True, "Data": {"Targets": targets, "Total": len(targets)}}
            data = {**rule, "FilterPattern": json.dumps(rule["FilterPattern"]), "Targets": targets}
            return {"Code": "Success", "Success": True, "Data": data}
        raise EventBridgeApiError(404, "InvalidAction.NotFound", f"{action} is not served here")
