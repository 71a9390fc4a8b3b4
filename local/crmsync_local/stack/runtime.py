"""In-process Lambda runtime: the template's real handlers run when moto's Lambda is invoked.

With `lambda.use_docker = False` moto's Lambda backend is `LambdaSimpleBackend`, whose `invoke` only
echoes. `install` replaces that one method (restored by `uninstall`) with a dispatcher that loads the
function's module from its CodeUri + Handler, applies the function's environment, calls the handler
with a Lambda-shaped context and returns what Lambda returns — including `x-amz-function-error:
Unhandled` and `{"errorType": <exception class name>, ...}` on an exception, so Step Functions
`Retry`/`Catch` on our error names behave as on AWS.

Handlers run one at a time (a re-entrant lock): the environment is process-wide. A handler invoking
another function synchronously nests; one that waits for a state machine whose tasks are Lambdas would
deadlock — handlers never wait for executions. `InvocationType=Event` calls run on one background thread
in submission order (`LambdaRuntime.wait_for_async`); Lambda's two automatic async retries are not
emulated. A function's Timeout is not enforced while the handler runs (a thread cannot be stopped), but
a call that overran is reported as `Sandbox.Timedout`, as Lambda would. The function's CodeUri and its
layers' directories are on sys.path while it runs; a sibling module it imports is cached in sys.modules
under its plain name, so two functions must not ship different modules of the same name.

A handler's environment is swapped into `os.environ` key by key, and botocore reads the environment
while it builds a client: a key the swap removes in between raises `KeyError` (measured: 4 of 600
clients built beside a swapping thread). moto's Step Functions threads build a client for every Task
they run, and such an error fails the Task with `States.Runtime` (seen when two executions overlap).
So a swap and a client build never interleave (`_ENVIRONMENT_SWAP`); holding the handlers' lock for
the build instead would also serialize it behind every running handler and change which execution's
step runs next.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.exceptions import JsonRESTError
from moto.stepfunctions.parser.asl.utils import boto_client as moto_boto_client

from crmsync_local.stack.errors import StackError
from crmsync_local.stack.provision import FunctionSpec

_ORIGINAL_INVOKE = LambdaSimpleBackend.invoke
_ORIGINAL_BOTO_CLIENT_FOR = moto_boto_client.boto_client_for
_ENVIRONMENT_SWAP = threading.Lock()
# The modules of moto's Step Functions interpreter that build clients with `boto_client_for`, each holding
# its own reference to it.
_CLIENT_BUILDERS = (
    "moto.stepfunctions.parser.asl.utils.boto_client",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3",
    *(
        f"moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_{name}"
        for name in ("aws_sdk", "batch", "dynamodb", "ecs", "events", "glue", "sfn", "sns", "sqs", "unsupported")
    ),
)
_LOG_TAIL_BYTES = 4096
_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# Set on a developer's machine, these would send a handler's AWS calls somewhere else than the stack.
_UNSET_IN_HANDLERS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL")


@dataclass(frozen=True)
class LambdaLogLine:
    """One line a handler wrote: `stream` is stdout, stderr, logging or error (the uncaught traceback)."""

    function: str
    request_id: str
    stream: str
    text: str


class LogSink:
    """Where handler output goes (a file or stream keeps the CLI demo readable) and `lines` for tests."""

    def __init__(self, stream: TextIO, *, owns_stream: bool = False) -> None:
        self._stream: TextIO | None = stream
        self._owns_stream = owns_stream
        self._lock = threading.Lock()
        self.lines: list[LambdaLogLine] = []

    @classmethod
    def to_file(cls, path: Path) -> LogSink:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("a", encoding="utf-8"), owns_stream=True)

    def line(self, line: LambdaLogLine) -> None:
        with self._lock:
            self.lines.append(line)
            self._write(f"[{line.function}] {line.request_id[:8]} {line.stream}: {line.text}")

    def note(self, text: str) -> None:
        """A runtime line (START/END/REPORT, async failures): in the sink, not in `lines`."""
        with self._lock:
            self._write(text)

    def _write(self, text: str) -> None:
        if self._stream is None:
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        self._stream.write(f"{stamp}Z {text}\n")
        self._stream.flush()

    def close(self) -> None:
        """Stop writing (closing a file the sink opened); `lines` stay readable."""
        with self._lock:
            if self._owns_stream and self._stream is not None:
                self._stream.close()
            self._stream = None


class LambdaContext:
    """The context object the Python runtime passes (same attribute names and types)."""

    def __init__(self, spec: FunctionSpec, request_id: str, invoked_arn: str, log_stream_name: str) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = invoked_arn
        # The real runtime reads it from AWS_LAMBDA_FUNCTION_MEMORY_SIZE, so it is a string there too.
        self.memory_limit_in_mb = str(spec.memory_size)
        self.aws_request_id = request_id
        self.log_group_name = spec.log_group or f"/aws/lambda/{spec.name}"
        self.log_stream_name = log_stream_name
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline_ms = int(time.time() * 1000) + spec.timeout * 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def __repr__(self) -> str:
        return f"LambdaContext({self.function_name}, request_id={self.aws_request_id})"


@dataclass(frozen=True)
class Invocation:
    """What one synchronous call returned, as the Lambda Invoke API reports it."""

    payload: bytes
    function_error: str | None
    log_tail: str
    request_id: str


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class InvalidRequestContentException(JsonRESTError):
    """Lambda's answer to a payload that is not JSON."""

    code = 400

    def __init__(self, detail: str) -> None:
        super().__init__("InvalidRequestContentException", f"Could not parse request body into json: {detail}")


class LambdaRuntime:
    """Runs the template's handlers in this process, one at a time."""

    def __init__(
        self,
        functions: Mapping[str, FunctionSpec],
        *,
        region: str,
        sink: LogSink,
        enforce_timeouts: bool = True,
    ) -> None:
        self.functions = dict(functions)
        self.by_name = {spec.name: spec for spec in functions.values()}
        self.region = region
        self.sink = sink
        self.enforce_timeouts = enforce_timeouts
        self.endpoint_url: str | None = None
        self._token = uuid.uuid4().hex[:8]
        self._lock = threading.RLock()
        self._modules: dict[str, tuple[ModuleType, Callable[..., Any]]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crmsync-lambda-async")
        self._pending: set[Future[None]] = set()

    # -------------------------------------------------------------- invoking

    def invoke(self, spec: FunctionSpec, event: Any, invoked_arn: str | None = None) -> Invocation:
        """Call the handler with `event`; an exception becomes Lambda's Unhandled error payload."""
        request_id = str(uuid.uuid4())
        with self._lock:
            stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{request_id.replace('-', '')}"
            context = LambdaContext(spec, request_id, invoked_arn or spec.arn, stream_name)
            self.sink.note(f"[{spec.logical_id}] START RequestId: {request_id} Version: $LATEST")
            started = time.monotonic()
            with self._sandbox(spec, context) as capture:
                payload, error = self._call(spec, event, context, capture)
            elapsed = time.monotonic() - started
            if self.enforce_timeouts and elapsed > spec.timeout:
                message = f"RequestId: {request_id} Error: Task timed out after {spec.timeout:.2f} seconds"
                payload, error = _error_payload("Sandbox.Timedout", message, []), "Unhandled"
                self.sink.note(f"[{spec.logical_id}] {message}")
            self.sink.note(f"[{spec.logical_id}] END RequestId: {request_id}")
            self.sink.note(
                f"[{spec.logical_id}] REPORT RequestId: {request_id} Duration: {elapsed * 1000:.2f} ms "
                f"Memory Size: {spec.memory_size} MB"
            )
        tail = "".join(f"{line}\n" for line in capture.texts).encode()[-_LOG_TAIL_BYTES:]
        return Invocation(payload, error, base64.b64encode(tail).decode(), request_id)

    def submit_async(self, spec: FunctionSpec, event: Any, invoked_arn: str | None = None) -> None:
        """`InvocationType=Event`: queue the call and return at once, as Lambda's 202 does."""

        def run() -> None:
            result = self.invoke(spec, event, invoked_arn)
            if result.function_error:
                self.sink.note(
                    f"[{spec.logical_id}] async invocation {result.request_id} failed: {result.payload!r}"
                )

        future = self._executor.submit(run)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def wait_for_async(self, timeout: float = 30.0) -> None:
        """Block until every queued `Event` invocation has run."""
        done, not_done = wait(list(self._pending), timeout=timeout)
        for future in done:
            future.result()
        if not_done:
            raise TimeoutError(f"{len(not_done)} async Lambda invocation(s) still running after {timeout}s")

    def close(self, timeout: float = 60.0) -> None:
        """Let queued async calls and the handler in flight finish, then forget the loaded modules.

        A handler still running after its stack stopped would send its AWS calls to the next stack's
        mock (or to AWS); the caller stops the executions first, so no new invocation starts.
        """
        with contextlib.suppress(TimeoutError):
            self.wait_for_async(timeout=timeout)
        if self._lock.acquire(timeout=timeout):
            self._lock.release()
        else:
            self.sink.note(f"a handler was still running {timeout}s after the stack stopped")
        self._executor.shutdown(wait=False, cancel_futures=True)
        for module, _handler in self._modules.values():
            sys.modules.pop(module.__name__, None)
        self._modules.clear()

    # -------------------------------------------------------------- internals

    def _call(
        self, spec: FunctionSpec, event: Any, context: LambdaContext, capture: _Frame
    ) -> tuple[bytes, str | None]:
        try:
            handler = self._handler(spec)
        except _InitError as exc:
            capture.error(f"[ERROR] {exc.error_type}: {exc}")
            return _error_payload(exc.error_type, str(exc), []), "Unhandled"
        try:
            result = handler(event, context)
        except SystemExit as exc:
            capture.error(f"[ERROR] Runtime.ExitError: the handler called sys.exit({exc.code!r})")
            return _error_payload(
                "Runtime.ExitError", f"Runtime exited with error: exit status {exc.code}", []
            ), "Unhandled"
        except Exception as exc:
            handler_frames = exc.__traceback__.tb_next if exc.__traceback__ else None  # skip this frame
            frames = traceback.format_list(traceback.extract_tb(handler_frames))
            capture.error(f"[ERROR] {type(exc).__name__}: {exc}")
            for text in traceback.format_exception(type(exc), exc, handler_frames):
                capture.error(text.rstrip("\n"))
            return _error_payload(type(exc).__name__, str(exc), frames), "Unhandled"
        try:
            return json.dumps(result).encode(), None
        except (TypeError, ValueError) as exc:
            message = f"Unable to marshal response: {exc}"
            capture.error(f"[ERROR] Runtime.MarshalError: {message}")
            return _error_payload("Runtime.MarshalError", message, []), "Unhandled"

    def _handler(self, spec: FunctionSpec) -> Callable[..., Any]:
        if spec.logical_id in self._modules:
            return self._modules[spec.logical_id][1]
        module_path, _, handler_name = spec.handler.rpartition(".")
        relative = module_path.replace(".", "/")
        candidates = [spec.code_dir / f"{relative}.py", spec.code_dir / relative / "__init__.py"]
        source = next((path for path in candidates if path.is_file()), None)
        if not module_path or source is None:
            raise _InitError(
                "Runtime.ImportModuleError",
                f"Unable to import module '{module_path}': No module named '{module_path}' in {spec.code_dir}",
            )
        unique_name = f"_crmsync_local_{self._token}_{spec.logical_id}"
        module_spec = importlib.util.spec_from_file_location(unique_name, source)
        assert module_spec is not None
        assert module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[unique_name] = module  # dataclasses and pydantic look their module up here
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(unique_name, None)
            raise _InitError(
                "Runtime.ImportModuleError", f"Unable to import module '{module_path}': {exc}"
            ) from exc
        handler: Callable[..., Any] | None = getattr(module, handler_name, None)
        if not callable(handler):
            sys.modules.pop(unique_name, None)
            raise _InitError(
                "Runtime.HandlerNotFound", f"Handler '{handler_name}' missing on module '{module_path}'"
            )
        self._modules[spec.logical_id] = (module, handler)
        return handler

    @contextlib.contextmanager
    def _sandbox(self, spec: FunctionSpec, context: LambdaContext) -> Iterator[_Frame]:
        environment: dict[str, str | None] = {name: None for name in _UNSET_IN_HANDLERS}
        environment.update(spec.environment)
        environment.update(_FAKE_CREDENTIALS)
        environment.update(
            {
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": context.log_group_name,
                "AWS_LAMBDA_LOG_STREAM_NAME": context.log_stream_name,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
                "LAMBDA_TASK_ROOT": str(spec.code_dir),
                "_HANDLER": spec.handler,
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
        )
        if self.endpoint_url:
            environment["AWS_ENDPOINT_URL"] = self.endpoint_url
        paths = [str(path) for path in (spec.code_dir, *spec.layer_dirs)]
        with _environment(environment), _sys_path(paths), _capture(self.sink, spec.logical_id, context) as frame:
            yield frame


def _error_payload(error_type: str, message: str, stack: list[str]) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": stack}).encode()


@contextlib.contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    try:
        _swap_environment(values)
        yield
    finally:
        _swap_environment(saved)


def _swap_environment(values: Mapping[str, str | None]) -> None:
    with _ENVIRONMENT_SWAP:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _sys_path(paths: list[str]) -> Iterator[None]:
    added = [path for path in paths if path not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for path in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(path)


# ------------------------------------------------------------------------------------------------ capture


class _Frame:
    """The output of one running invocation, split into lines."""

    def __init__(self, sink: LogSink, function: str, request_id: str) -> None:
        self.sink = sink
        self.function = function
        self.request_id = request_id
        self.texts: list[str] = []
        self._partial: dict[str, str] = {}

    def write(self, stream: str, text: str) -> None:
        buffered = self._partial.get(stream, "") + text
        *complete, rest = buffered.split("\n")
        self._partial[stream] = rest
        for line in complete:
            self._emit(stream, line)

    def error(self, text: str) -> None:
        for line in text.split("\n"):
            self._emit("error", line)

    def flush(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._emit(stream, rest)
        self._partial.clear()

    def _emit(self, stream: str, text: str) -> None:
        self.texts.append(text)
        self.sink.line(LambdaLogLine(self.function, self.request_id, stream, text))


class _Router:
    """Process-wide routing of sys.stdout/sys.stderr and logging records to the running invocation.

    sys.stdout is swapped for a router stream during the outermost invocation. A logger created inside
    a handler (Powertools binds `sys.stdout` when its Logger is created) keeps writing to that router
    stream afterwards, so the router lives for the whole process: writes from the invoking thread go to
    the innermost running invocation, every other write goes to the stream the router replaced.
    """

    def __init__(self) -> None:
        self.frames: list[_Frame] = []
        self.owner: int | None = None
        self.fallback: dict[str, TextIO] = {}
        self.streams = {"stdout": _RouterStream(self, "stdout"), "stderr": _RouterStream(self, "stderr")}
        self.handler = _RouterHandler(self)

    def frame_for_current_thread(self) -> _Frame | None:
        if self.frames and threading.get_ident() == self.owner:
            return self.frames[-1]
        return None


class _RouterStream(io.TextIOBase):
    def __init__(self, router: _Router, name: str) -> None:
        super().__init__()
        self._router = router
        self._name = name

    def write(self, text: str) -> int:
        frame = self._router.frame_for_current_thread()
        if frame is not None:
            frame.write(self._name, text)
        else:
            default = sys.__stdout__ if self._name == "stdout" else sys.__stderr__
            target = self._router.fallback.get(self._name) or default
            if target is not None:
                target.write(text)
        return len(text)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        frame = self._router.frame_for_current_thread()
        if frame is None:
            target = self._router.fallback.get(self._name)
            if target is not None:
                target.flush()

    def isatty(self) -> bool:
        return False


class _RouterHandler(logging.Handler):
    def __init__(self, router: _Router) -> None:
        super().__init__(level=logging.NOTSET)
        self._router = router
        self.setFormatter(logging.Formatter("[%(levelname)s] %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        frame = self._router.frame_for_current_thread()
        if frame is not None:
            frame.write("logging", self.format(record) + "\n")


_ROUTER = _Router()


def in_invocation() -> bool:
    """A function invocation is running on this thread: its log lines go to the stack's sink (the CLI's
    own log handlers, `crmsync_local.operator_logs`, leave them alone so no line is written twice)."""
    return _ROUTER.frame_for_current_thread() is not None


def _adopt_console_handlers(router: _Router) -> None:
    """Point logging handlers that write to the console streams at the router instead.

    A logger created before any handler ran (e.g. Powertools' Logger when `crmsync.runtime` is imported
    by the CLI or a test) holds the console stream itself; without this, its lines would bypass the sink.
    Outside invocations the router forwards to the same console stream, so nothing else changes.
    """
    targets = {id(router.fallback.get(name)): stream for name, stream in router.streams.items()}
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if type(handler) is logging.StreamHandler and id(handler.stream) in targets:
                handler.setStream(targets[id(handler.stream)])


@contextlib.contextmanager
def _capture(sink: LogSink, function: str, context: LambdaContext) -> Iterator[_Frame]:
    frame = _Frame(sink, function, context.aws_request_id)
    router = _ROUTER
    outermost = not router.frames
    if outermost:
        router.owner = threading.get_ident()
        for name, stream in router.streams.items():
            current = getattr(sys, name)
            if current is not stream:
                router.fallback[name] = current
            setattr(sys, name, stream)
        _adopt_console_handlers(router)
        logging.getLogger().addHandler(router.handler)
    router.frames.append(frame)
    try:
        yield frame
    finally:
        frame.flush()
        router.frames.pop()
        if outermost:
            logging.getLogger().removeHandler(router.handler)
            for name, stream in router.streams.items():
                if getattr(sys, name) is stream:
                    setattr(sys, name, router.fallback[name])
            router.owner = None


# ------------------------------------------------------------------------------------------------ moto hook

_active: LambdaRuntime | None = None


def install(runtime: LambdaRuntime) -> None:
    """Route moto's Lambda invocations to `runtime` (one stack per process at a time)."""
    global _active
    if _active is not None:
        raise StackError("another LocalStack is already running in this process; stop it first")
    _active = runtime
    LambdaSimpleBackend.invoke = _dispatching_invoke  # type: ignore[method-assign]
    _set_client_builder(_client_between_swaps)


def uninstall(runtime: LambdaRuntime) -> None:
    global _active
    if _active is runtime:
        LambdaSimpleBackend.invoke = _ORIGINAL_INVOKE  # type: ignore[method-assign]
        _set_client_builder(_ORIGINAL_BOTO_CLIENT_FOR)
        _active = None


def _set_client_builder(builder: Callable[..., Any]) -> None:
    for name in _CLIENT_BUILDERS:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a moto release without that service integration
            continue
        if hasattr(module, "boto_client_for"):
            module.boto_client_for = builder


def _client_between_swaps(*args: Any, **kwargs: Any) -> Any:
    """moto's `boto_client_for`, never while a handler's environment is being swapped in or out."""
    with _ENVIRONMENT_SWAP:
        return _ORIGINAL_BOTO_CLIENT_FOR(*args, **kwargs)


def _dispatching_invoke(
    self: LambdaSimpleBackend,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: Any,
) -> str | bytes | None:
    function = self.get_function(function_name, qualifier)  # moto's errors for unknown functions
    runtime = _active
    spec = runtime.by_name.get(function.function_name) if runtime is not None else None
    if runtime is None or spec is None:
        return _ORIGINAL_INVOKE(self, function_name, qualifier, body, headers, response_headers)
    raw = body.decode() if isinstance(body, bytes) else (body or "")
    try:
        event = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise InvalidRequestContentException(str(exc)) from exc
    invoked_arn = f"{spec.arn}:{qualifier}" if qualifier else spec.arn
    invocation_type = _header(headers, "X-Amz-Invocation-Type") or "RequestResponse"
    if invocation_type == "DryRun":
        return b""
    if invocation_type == "Event":
        runtime.submit_async(spec, event, invoked_arn)
        return b""
    result = runtime.invoke(spec, event, invoked_arn)
    response_headers["x-amz-executed-version"] = "$LATEST"
    response_headers["x-amz-log-result"] = result.log_tail
    if result.function_error:
        response_headers["x-amz-function-error"] = result.function_error
    return result.payload


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and hasattr(headers, "items"):
        value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
    return None if value is None else str(value)
