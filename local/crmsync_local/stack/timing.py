"""Scale the time moto's Step Functions interpreter sleeps: Retry intervals and Wait states.

moto's interpreter sleeps for real: `retrier_decl.py` calls `time.sleep(interval)` between attempts and
`WaitFunction._wait_interval` waits on the program-state event for the Wait state's seconds (also for
`Timestamp`/`SecondsPath`, which compute their seconds first). A scale of 0 makes both instant (tests);
1.0 keeps real time (the demo). `TimeoutSeconds`/`HeartbeatSeconds` are not scaled: scaling them to 0
would time every task out.
"""

from __future__ import annotations

import threading
import time
from types import ModuleType
from typing import Any

from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.eval.environment import Environment

from crmsync_local.stack.errors import StackError

_ORIGINAL_TIME = retrier_decl.time  # type: ignore[attr-defined]
_ORIGINAL_WAIT_INTERVAL = WaitFunction._wait_interval
_lock = threading.Lock()
_scale: float | None = None


class _ScaledTime(ModuleType):
    """Stands in for the `time` module inside retrier_decl: everything real except `sleep`."""

    def __init__(self) -> None:
        super().__init__("time")

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        scaled = seconds * (1.0 if _scale is None else _scale)
        if scaled > 0:
            time.sleep(scaled)


def _scaled_wait_interval(self: WaitFunction, env: Environment, wait_seconds: int) -> None:
    """Wait `wait_seconds * scale`, ending early when the execution stops (as moto's own wait does)."""
    deadline = time.monotonic() + wait_seconds * (1.0 if _scale is None else _scale)
    while env.is_running():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        env.program_state_event.wait(min(remaining, 0.5))


def install(scale: float) -> None:
    """Scale interpreter sleeps by `scale` until `uninstall` (one stack per process at a time)."""
    global _scale
    if scale < 0:
        raise StackError(f"time_scale must be >= 0, got {scale}")
    with _lock:
        _scale = scale
        retrier_decl.time = _ScaledTime()  # type: ignore[attr-defined]
        WaitFunction._wait_interval = _scaled_wait_interval  # type: ignore[method-assign]


def uninstall() -> None:
    global _scale
    with _lock:
        _scale = None
        retrier_decl.time = _ORIGINAL_TIME  # type: ignore[attr-defined]
        WaitFunction._wait_interval = _ORIGINAL_WAIT_INTERVAL  # type: ignore[method-assign]
