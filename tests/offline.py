"""What the offline tests of hub-backed backends share: a guard against hangs, a probe that must
not run, and a loopback endpoint that swallows connections (no traffic leaves this machine)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

# Not a speed limit: a bound on a hang (hub retries take minutes), so a broken probe fails the
# test instead of blocking the suite.
HANG_GUARD_S = 60


def no_network(*args, **kwargs):
    raise AssertionError("the hub was probed")


def error_within_guard(call):
    """The exception `call` raises, run in a thread so that a hang fails the test."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:  # handed to the test thread to assert on
            raised.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HANG_GUARD_S)
    assert not worker.is_alive(), f"still loading after {HANG_GUARD_S} s: the hub was retried"
    assert raised, "loading succeeded offline"
    return raised[0]


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """An http:// endpoint on 127.0.0.1 where a connect can only time out, as on a network
    that drops packets: a listener that never accepts, its backlog filled, so Linux drops the
    next SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(address)
            fillers.append(filler)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(address)
        except TimeoutError:
            pass
        else:
            raise AssertionError("the loopback black hole accepted a connection")
        finally:
            probe.close()
        yield f"http://{address[0]}:{address[1]}"
    finally:
        for s in fillers:
            s.close()
        listener.close()


OFFLINE_WAYS = ("HF_HUB_OFFLINE", "refused", "black hole")


def cut_off(how: str, monkeypatch, stack: contextlib.ExitStack) -> str:
    """Make the hub unreachable one of OFFLINE_WAYS; returns what the error must then say."""
    import huggingface_hub.constants

    from xmodal.models import hub

    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        # The flag alone answers: not even the probe's one connect is tried.
        monkeypatch.setattr(hub, "hub_reachable", no_network)
        return "HF_HUB_OFFLINE is set"
    # Port 9 on this machine refuses at once; the black hole makes the probe time out.
    endpoint = "http://127.0.0.1:9" if how == "refused" else stack.enter_context(black_hole())
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    return "looks offline"
