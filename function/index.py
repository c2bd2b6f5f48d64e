"""Function Compute entry points. Both functions are built from this one code package.

- `index.handle_event`: the event function, behind the EventBridge rule (asynchronous).
- `index.handle_http`: the HTTP function, behind its HTTP trigger (authType function).

FC allows no other trigger beside an HTTP trigger, hence two functions. Modules are imported
inside the handlers so each pays only for what it uses: `GET /health` never loads the SDK.
"""


def handle_event(event, context):
    from dwrerun import event_function, verify

    if verify.is_verify(event):  # `make verify`: reads only, one `kind: verify` record
        return verify.handle_verify(event, context)

    return event_function.handle(event, context)


def handle_http(event, context):
    from dwrerun import http_function

    return http_function.handle(event, context)
