"""Decoding untrusted bytes in worker processes: a crash, a hang or a memory blow-up costs one file, not the server.

The native decoders that see a client's bytes first (pydicom's plugins:
libjpeg, openjpeg, RLE, JPEG-LS, Pillow; pydicom's own inflate; Pillow for
media images; FFmpeg through PyAV for videos) run here, in a
:class:`DecoderPool` of worker processes. Each task gets:

- a **time limit**: past it the worker is killed (SIGKILL) and replaced, and the
  task fails with ``LimitExceededError`` naming the limit;
- a **memory limit**: ``RLIMIT_DATA`` of the worker is its own size at start
  plus the limit, so an allocation past it fails (``MemoryError`` in Python, a
  failed ``malloc`` in C) instead of growing the server;
- **cancellation**: the caller's :class:`~voxelgate.cancel.CancelToken` kills
  the worker within a poll interval (0.05 s);
- **containment**: a panic (PyO3's ``PanicException``), an abort or a
  segmentation fault ends that worker only; the task fails with an
  ``InvalidInputError`` that names what happened, and the next task gets a new
  worker.

Workers come from multiprocessing's fork server: a process started fresh (not
a fork of the server, whose gRPC threads would not survive one), which has
imported the decoders once and forks each worker from itself. What crosses the
boundary: a task is a module-level function and small arguments (paths,
limits); its result is a small record; arrays it hands back on the way
(``emit``: decoded frames that ingest keeps in the derived cache) go as their
raw bytes, never pickled: in a memfd passed over the socket when large, on the
pipe when small.

:class:`InProcess` runs the same tasks in the calling thread, for tools and
tests over trusted files.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing
import os
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any, Protocol, TypeVar

import numpy as np

from voxelgate import errors
from voxelgate.cancel import NEVER, CancelToken
from voxelgate.errors import CancelledError, InvalidInputError, LimitExceededError, VoxelgateError

from .cpu import all_cores

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: What a task calls to hand something back while it runs: ``emit(meta, array or None)``.
Emit = Callable[[Any, "np.ndarray | None"], None]
#: What receives it in the caller.
OnItem = Callable[[Any, "np.ndarray | None"], None]

#: How often a waiting caller looks at its cancel token and the clock (seconds).
_POLL = 0.05


@dataclass(frozen=True)
class ContainLimits:
    """How many worker processes decode untrusted bytes, and the bounds of each task.

    Parameters
    ----------
    workers:
        Worker processes (at most this many tasks run at once; others wait).
    seconds:
        Longest a task may run before its worker is killed.
    memory_bytes:
        Memory a task may allocate beyond what its worker holds at start.
    tasks_per_worker:
        Tasks a worker runs before it is replaced (memory a decoder leaks or
        fragments does not pile up).

    Raises
    ------
    ValueError
        When a bound is not positive.
    """

    workers: int = 2
    seconds: float = 600.0
    memory_bytes: int = 4 * 1024**3
    tasks_per_worker: int = 1000

    def __post_init__(self) -> None:
        for name in ("workers", "seconds", "memory_bytes", "tasks_per_worker"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ContainLimits.{name} must be positive, got {getattr(self, name)}")


class Decoders(Protocol):
    """Runs decoding tasks: :class:`DecoderPool` (contained) or :class:`InProcess`.

    ``parallel`` is how many tasks it runs at once (see :func:`each`).
    """

    parallel: int

    def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        subject: str,
        on_item: OnItem | None = None,
        cancel: CancelToken = NEVER,
    ) -> T: ...

    def close(self) -> None: ...


class InProcess:
    """Runs each task in the calling thread (tools, and tests over files they trust)."""

    parallel = 1

    def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        subject: str,
        on_item: OnItem | None = None,
        cancel: CancelToken = NEVER,
    ) -> T:
        """Call ``fn(*args, emit=...)``; ``emit`` goes straight to ``on_item``.

        Raises
        ------
        CancelledError
            ``cancel`` was cancelled before the task began.
        """
        cancel.check(subject)

        def emit(meta: Any, array: np.ndarray | None = None) -> None:
            if on_item is not None:
                on_item(meta, array)

        return fn(*args, emit=emit)

    def close(self) -> None:
        return None


class DecoderPool:
    """Worker processes that run decoding tasks under a time and a memory limit each.

    ``preload`` names the modules of the tasks (and what they import), imported
    once by the fork server rather than by every worker; ``setup`` is a
    module-level function and its arguments that each worker calls once when it
    starts (process-wide settings of the decoders, as the server made its own). Workers start when first
    needed and are replaced after a crash, a kill or ``limits.tasks_per_worker``
    tasks. Thread-safe.
    """

    def __init__(
        self,
        limits: ContainLimits | None = None,
        *,
        preload: Sequence[str] = (),
        setup: tuple[Callable[..., None], tuple[Any, ...]] | None = None,
    ) -> None:
        self.limits = limits or ContainLimits()
        self.parallel = self.limits.workers
        self._preload = list(preload)
        self._setup = setup
        self._slots = threading.BoundedSemaphore(self.limits.workers)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._closed = False
        self.crashes = 0  # workers lost to a crash, a kill or a limit (tests and logs read it)

    def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        subject: str,
        on_item: OnItem | None = None,
        cancel: CancelToken = NEVER,
    ) -> T:
        """Run ``fn(*args, emit=...)`` in a worker; return its result.

        ``fn`` must be a module-level function (it travels by name) and its
        arguments and result small and picklable. Arrays it passes to ``emit``
        reach ``on_item`` (in this thread) as read-only arrays over the bytes
        received.

        Raises
        ------
        VoxelgateError
            What ``fn`` raised (the same type, reason and subject).
        LimitExceededError
            The task ran past the time limit, or ran out of its memory limit.
        InvalidInputError
            The decoder panicked, or its process died (a signal: a segmentation
            fault, an abort).
        CancelledError
            ``cancel`` was cancelled; the worker was stopped.
        ContainedError
            Any other exception of ``fn`` (a fault of the server, not of the
            input): its type and traceback are in the message, for the log.
        """
        self._acquire(cancel, subject)
        worker: _Worker | None = None
        try:
            worker = self._take()
            return worker.call(fn, args, on_item=on_item, cancel=cancel, limits=self.limits, subject=subject)
        finally:
            self._give_back(worker)
            self._slots.release()

    def start(self) -> None:
        """Start the missing workers now and wait until each answers, rather than on the first files.

        A server calls it before it serves: the fork server's start imports the
        decoders (a second or more), which the first ingest would otherwise wait for.

        Raises
        ------
        InvalidInputError
            A worker died while starting (its exit status is in the message and the log).
        """
        with self._lock:
            missing = self.limits.workers - len(self._idle) - len(self._busy)
        fresh = [_Worker(self.limits.memory_bytes, self._preload, self._setup) for _ in range(missing)]
        try:
            for w in fresh:
                w.call(ready, (), on_item=None, cancel=NEVER, limits=self.limits, subject="decoder start-up")
        except BaseException:
            for w in fresh:
                w.stop()
            raise
        with self._lock:
            self._idle.extend(fresh)

    def worker_pids(self, *, busy: bool) -> list[int]:
        """Process ids of the workers running a task (``busy``) or waiting for one."""
        with self._lock:
            workers = list(self._busy) if busy else list(self._idle)
        return [w.process.pid for w in workers if w.process.pid is not None]

    def close(self) -> None:
        """Stop every worker (tasks still running fail)."""
        with self._lock:
            self._closed = True
            workers = [*self._idle, *self._busy]
            self._idle.clear()
        for w in workers:
            w.stop()

    def _acquire(self, cancel: CancelToken, subject: str) -> None:
        while not self._slots.acquire(timeout=_POLL):
            cancel.check(subject)
        if cancel.cancelled:
            self._slots.release()
            cancel.check(subject)

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise errors.BusyError("the decoder pool is closed (the server is stopping)")
            worker = self._idle.pop() if self._idle else None
        if worker is None or not worker.alive():
            if worker is not None:
                worker.stop()
            worker = _Worker(self.limits.memory_bytes, self._preload, self._setup)
        with self._lock:
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: _Worker | None) -> None:
        if worker is None:
            return
        with self._lock:
            self._busy.discard(worker)
            keep = not self._closed and worker.alive() and worker.tasks < self.limits.tasks_per_worker
            if keep:
                self._idle.append(worker)
        if not keep:
            if worker.crashed:
                self.crashes += 1
            worker.stop()


def ready(*, emit: Emit) -> int:
    """The task :meth:`DecoderPool.start` runs: a worker that answers is up."""
    return os.getpid()


def each(
    decoders: Decoders, items: Sequence[T], fn: Callable[[T], R], *, width: int | None = None
) -> list[R | Exception]:
    """``fn(item)`` for every item, up to ``width`` (``decoders.parallel``) at once; an item's exception is its result.

    The files of an ingest batch are validated this way: with a pool, one file in
    the serving process and two in two workers at once (``width`` 3), and the wait
    for one worker to be scheduled overlaps the others' work.
    """

    def one(item: T) -> R | Exception:
        try:
            return fn(item)
        except Exception as exc:  # noqa: BLE001 - one item's failure is its result
            return exc

    width = min(len(items), decoders.parallel if width is None else width)
    if width <= 1:
        return [one(item) for item in items]
    with ThreadPoolExecutor(width, thread_name_prefix="contained") as threads:
        return list(threads.map(one, items))


class ContainedError(RuntimeError):
    """An unexpected exception inside a worker (a fault of the server): INTERNAL, with its traceback."""


def _context(preload: list[str]) -> Any:
    ctx = multiprocessing.get_context("forkserver")
    # The fork server is one per process, started on first use: the modules it imports (the
    # tasks and the decoders they load) are those named by the first pool that starts a worker.
    ctx.set_forkserver_preload(preload)
    return ctx


class _Worker:
    """One worker process, its pipe, and a file that keeps its stderr (decoders print there)."""

    def __init__(
        self, memory_bytes: int, preload: list[str], setup: tuple[Callable[..., None], tuple[Any, ...]] | None
    ) -> None:
        ctx = _context(preload)
        fd, self._stderr = tempfile.mkstemp(prefix="voxelgate-decoder-", suffix=".stderr")
        os.close(fd)
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_serve, args=(child, memory_bytes, self._stderr, setup), name="voxelgate-decoder", daemon=True
        )
        # The fork server (started by the first worker) and every worker it forks run where the
        # starting thread may run: every core, not the request threads' one (voxelgate.imaging.cpu).
        with all_cores():
            self.process.start()
        child.close()
        self.tasks = 0
        self.crashed = False

    def alive(self) -> bool:
        return not self.crashed and self.process.is_alive()

    def stop(self) -> None:
        """Kill the process (SIGKILL: a decoder stuck in C ignores anything gentler) and clean up."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5.0)
        self.conn.close()
        with contextlib.suppress(OSError):
            os.unlink(self._stderr)

    def _kill(self) -> None:
        self.crashed = True
        self.process.kill()
        self.process.join(5.0)

    def stderr_tail(self, limit: int = 2000) -> str:
        try:
            with open(self._stderr, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - limit))
                return fh.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def call(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        *,
        on_item: OnItem | None,
        cancel: CancelToken,
        limits: ContainLimits,
        subject: str,
    ) -> T:
        self.tasks += 1
        started = time.monotonic()
        try:
            self.conn.send((fn, args))
            while True:
                if cancel.cancelled:
                    self._kill()
                    raise CancelledError(cancel.reason or "cancelled", subject=subject)
                left = started + limits.seconds - time.monotonic()
                if left <= 0:
                    self._kill()
                    raise LimitExceededError(
                        f"decoding ran past the time limit of {limits.seconds:g} s per file; it was stopped",
                        subject=subject,
                    )
                if not self.conn.poll(min(left, _POLL)):
                    continue
                kind, *rest = self.conn.recv()
                if kind == "item":
                    meta, dtype, shape, shared = rest
                    try:
                        array = None
                        if shared:
                            array = _receive_shared(self.conn, np.dtype(dtype), shape)
                        elif dtype is not None:
                            array = np.frombuffer(self.conn.recv_bytes(), dtype=np.dtype(dtype)).reshape(shape)
                        if on_item is not None:
                            on_item(meta, array)
                    except BaseException:
                        self._kill()  # the task is half done and the pipe out of step: start afresh
                        raise
                    continue
                return self._outcome(kind, rest, limits, subject)  # type: ignore[no-any-return]  # what the task returned, unpickled: its T
        except (EOFError, ConnectionError):
            raise self._died(subject) from None
        except (KeyboardInterrupt, SystemExit):
            self._kill()
            raise

    def _outcome(self, kind: str, rest: list[Any], limits: ContainLimits, subject: str) -> Any:
        if kind == "ok":
            return rest[0]
        if kind == "error":
            cls_name, reason, err_subject = rest
            cls = getattr(errors, cls_name, None)
            if not (isinstance(cls, type) and issubclass(cls, VoxelgateError)):
                cls = VoxelgateError
            raise cls(reason, subject=err_subject or subject)
        if kind == "memory":
            self._kill()  # its heap may be left fragmented near the limit
            raise LimitExceededError(
                f"decoding needed more than the memory limit of {limits.memory_bytes} bytes per file", subject=subject
            )
        if kind == "panic":
            type_name, text = rest
            self._kill()
            raise InvalidInputError(f"the decoder panicked ({type_name}: {text})", subject=subject)
        type_name, text = rest
        raise ContainedError(f"{type_name} in a decoder process:\n{text}")

    def _died(self, subject: str) -> InvalidInputError:
        self.crashed = True
        self.process.join(5.0)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit status {code}"
        log.warning("a decoder process died", extra={"how": how, "stderr": self.stderr_tail()[-500:]})
        return InvalidInputError(
            f"decoding crashed its worker process ({how}): the data is corrupt or hits a decoder bug", subject=subject
        )


# -- the worker's side ----------------------------------------------------------------------------


def _limit_memory(memory_bytes: int) -> None:
    """Let this process's data segment (heap and private mappings) grow by ``memory_bytes`` at most."""
    import resource

    used = 0
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmData:"):
                    used = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    limit = used + memory_bytes
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


#: Arrays of at least this many bytes go back in a memfd rather than through the pipe.
SHARED_BYTES = 1 << 20


def _send_item(conn: Connection, meta: Any, array: np.ndarray | None = None) -> None:
    """Hand ``meta`` and ``array`` to the caller: a large array in a memfd whose descriptor crosses the socket.

    Through the pipe, a 26 MiB frame crosses in socket-buffer-sized pieces, each a hand-over
    between the two processes: on a loaded machine every one waits for the scheduler, which cost
    tenths of a second a frame. A memfd is written in one call and mapped by the caller.
    """
    if array is None:
        conn.send(("item", meta, None, None, False))
        return
    array = np.ascontiguousarray(array)
    if array.nbytes >= SHARED_BYTES and hasattr(os, "memfd_create"):
        fd = os.memfd_create("voxelgate-decoded", os.MFD_CLOEXEC)
        try:
            view = array.data.cast("B")
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
            conn.send(("item", meta, array.dtype.str, array.shape, True))
            send_handle(conn, fd, os.getppid())
        finally:
            os.close(fd)
        return
    conn.send(("item", meta, array.dtype.str, array.shape, False))
    conn.send_bytes(array.data.cast("B"))


def _receive_shared(conn: Connection, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
    """The array a worker wrote into a memfd (:func:`_send_item`), mapped read-only.

    Raises
    ------
    ContainedError
        The memfd does not hold the bytes announced (a fault of the worker's side).
    """
    fd = recv_handle(conn)
    try:
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if os.fstat(fd).st_size != nbytes:
            raise ContainedError(f"a decoded array's memfd holds {os.fstat(fd).st_size} bytes, not {nbytes}")
        if nbytes == 0:
            return np.empty(shape, dtype)
        populate = getattr(mmap, "MAP_POPULATE", 0)  # its pages mapped at once, not one fault each
        mapping = mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    return np.frombuffer(mapping, dtype=dtype).reshape(shape)  # the mapping lives as long as the array


def _serve(
    conn: Connection,
    memory_bytes: int,
    stderr_path: str,
    setup: tuple[Callable[..., None], tuple[Any, ...]] | None,
) -> None:
    """A worker's loop: run tasks until the pipe closes."""
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ["RUST_BACKTRACE"] = "0"  # a panic prints one line, not a backtrace
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops workers
    logging.getLogger().handlers[:] = [logging.NullHandler()]
    pydicom_log = logging.getLogger("pydicom")
    pydicom_log.setLevel(logging.WARNING)
    pydicom_log.propagate = False
    if setup is not None:
        setup[0](*setup[1])
    _limit_memory(memory_bytes)

    def emit(meta: Any, array: np.ndarray | None = None) -> None:
        _send_item(conn, meta, array)

    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return
        if os.lseek(2, 0, os.SEEK_END):  # what the last task printed is not this one's
            os.ftruncate(2, 0)
            os.lseek(2, 0, os.SEEK_SET)
        try:
            reply: tuple[Any, ...] = ("ok", fn(*args, emit=emit))
        except VoxelgateError as exc:
            reply = ("error", type(exc).__name__, exc.reason, exc.subject)
        except MemoryError:
            reply = ("memory",)
        except (KeyboardInterrupt, SystemExit):
            return
        except Exception as exc:  # noqa: BLE001 - reported to the caller, who logs it as a server fault
            reply = ("bug", type(exc).__name__, "".join(traceback.format_exception(exc))[-4000:])
        except BaseException as exc:  # noqa: BLE001 - a native extension's panic (PyO3 PanicException)
            reply = ("panic", type(exc).__name__, " ".join(str(exc).split())[:300])
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return
        except Exception as exc:  # noqa: BLE001 - the result did not pickle
            conn.send(("bug", type(exc).__name__, "".join(traceback.format_exception(exc))[-4000:]))
