"""Worker pools: threads (embedded default) or one child process per job (pulpcore style).

A pool runs ``concurrency`` executor threads that claim and run jobs, plus one monitor thread that
renews the leases of its running jobs, relays cancel requests, keeps the worker's heartbeat row fresh
and runs the maintenance sweeps. In process mode an executor thread supervises a child process per
job, so a lost lease, a deadline or a shutdown can kill the job hard; in thread mode those stop the
handler at its next fenced write or cancellation check.

``stop(timeout)``: stop claiming, let running jobs finish within ``timeout``, then hand the rest back
to the queue (fenced, so a handler that keeps going cannot write any more).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from sqlalchemy import bindparam, delete, select

from nodewright import __version__, runtime
from nodewright.config import Settings
from nodewright.db.database import Database
from nodewright.db.models.jobs import Job, WorkerRecord
from nodewright.db.types import utcnow
from nodewright.jobs import completion, local, metrics, processes
from nodewright.jobs.claim import ClaimedJob, claim_next
from nodewright.jobs.connections import Connections
from nodewright.jobs.errors import DEADLINE_EXCEEDED, WORKER_LOST, JobError, LeaseLost
from nodewright.jobs.fencing import renew_lease
from nodewright.jobs.maintainer import enqueue_periodic, prune_workers, requeue_expired
from nodewright.jobs.notify import PostgresListener, Wakeup, subscribe_local
from nodewright.jobs.registry import Registry, load_handler_modules
from nodewright.jobs.registry import registry as default_registry
from nodewright.jobs.runner import ChildSpec, child_main, run_claimed, spawn_context

log = logging.getLogger(__name__)

MODES = ("thread", "process")
# PostgreSQL: the job row, unless another transaction holds its lock (then no row, and no waiting).
_UNLOCKED = select(Job.id).where(Job.id == bindparam("id")).with_for_update(skip_locked=True)
PROCESS_KILL_GRACE_SECONDS = 5.0
CLAIM_DRAIN_SECONDS = 60.0
REAP_EVERY_SECONDS = 1.0


@dataclass
class _Running:
    claimed: ClaimedJob
    cancel: Any  # threading.Event or multiprocessing Event
    lost: threading.Event = field(default_factory=threading.Event)
    process: Any = None


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class WorkerPool:
    def __init__(
        self,
        database: str | Database,
        settings: Settings | None = None,
        *,
        concurrency: int | None = None,
        mode: str | None = None,
        registry: Registry | None = None,
        lease_seconds: float | None = None,
        poll_interval: float | None = None,
        worker_id: str | None = None,
        maintenance: bool = True,
        listen: bool = True,
    ) -> None:
        settings = settings or Settings()
        if isinstance(database, Database):
            self._db, self._owns_db = database, False
        else:
            self._db, self._owns_db = Database(database), True
        self.concurrency = concurrency if concurrency is not None else settings.embedded_workers
        self.mode = mode or settings.worker_mode
        if self.mode not in MODES:
            raise ValueError(f"worker mode must be one of {MODES}")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.registry = registry or default_registry
        self.lease_seconds = lease_seconds or settings.job_lease_seconds
        self.poll_interval = poll_interval or settings.job_poll_interval
        self.worker_id = worker_id or make_worker_id()
        self._maintenance = maintenance
        self._listen = listen
        self._connections = Connections(self._db)
        self._db_tag = processes.database_tag(self._db.url)  # job ids are per database
        self._kinds: list[str] = []
        self._wakeup = Wakeup()
        self._stopping = threading.Event()
        self._monitor_stop = threading.Event()
        self._lock = threading.Lock()
        self._active: dict[int, _Running] = {}
        # Claims in flight (a SQLite claim can wait up to the busy timeout for the write lock); stop()
        # waits for them, and a claim that completes after stop began is handed back, not abandoned.
        self._claims = threading.Condition()
        self._claims_in_flight = 0
        self._executors: list[threading.Thread] = []
        self._monitor: threading.Thread | None = None
        self._renewer: threading.Thread | None = None
        self._listener: PostgresListener | None = None
        self._liveness: local.Liveness | None = None
        self._wake_listener: local.WakeListener | None = None
        self._started = False

    # ----------------------------------------------------------------- lifecycle

    @property
    def database(self) -> Database:
        return self._db

    def active_job_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._active)

    def wake(self) -> None:
        self._wakeup.notify()

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.registry is default_registry:
            load_handler_modules()
        self._kinds = self.registry.kinds()
        subscribe_local(self._wakeup)
        self._write_worker_row()
        if self._listen and not self._db.is_sqlite:
            self._listener = PostgresListener(self._db.url, self._wakeup)
            self._listener.start()
        self._monitor = threading.Thread(
            target=self._monitor_loop, name="nodewright-jobs-monitor", daemon=True
        )
        self._monitor.start()
        self._renewer = threading.Thread(target=self._renew_loop, name="nodewright-jobs-renew", daemon=True)
        self._renewer.start()
        self._start_local()
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._executor_loop, name=f"nodewright-job-{index}", daemon=True)
            thread.start()
            self._executors.append(thread)
        log.info("job worker %s started (%s x%d)", self.worker_id, self.mode, self.concurrency)

    def _start_local(self) -> None:
        """SQLite: liveness beside the database, and wake-ups from other processes (see ``local``)."""
        directory = local.trusted_dir(self._db.url)
        if directory is None:
            return
        renewer = self._renewer
        self._liveness = local.Liveness(
            directory,
            self.worker_id,
            self.lease_seconds,
            held=self._held_attempts,
            healthy=lambda: renewer is not None and renewer.is_alive(),
        )
        self._liveness.beat()
        self._liveness.start()
        if self._listen:
            try:
                self._wake_listener = local.WakeListener(directory, self._wakeup.notify)
            except OSError:
                log.warning("no wake-up socket for %s; other processes' jobs are found by polling", directory)
            else:
                self._wake_listener.start()

    def _held_attempts(self) -> list[tuple[int, int]]:
        with self._lock:
            return [
                (job_id, item.claimed.attempt)
                for job_id, item in self._active.items()
                if not item.lost.is_set()
            ]

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; wait up to ``timeout`` for running jobs, then hand the rest back."""
        if not self._started:
            return
        self._stopping.set()
        self._wakeup.notify()
        deadline = time.monotonic() + timeout
        for thread in self._executors:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._claims:
            # Bounded by the claim's own lock wait (the SQLite busy timeout); the claimer hands back.
            self._claims.wait_for(lambda: self._claims_in_flight == 0, timeout=CLAIM_DRAIN_SECONDS)
        with self._lock:
            leftovers = list(self._active.values())
        for running in leftovers:
            running.lost.set()
            if running.process is not None:
                running.process.kill()
                running.process.join(PROCESS_KILL_GRACE_SECONDS)
            else:
                # Thread mode: the handler's own subprocesses (ansible-playbook, ssh) must not outlive
                # the attempt that is handed back (nor this process, if it is about to exit).
                processes.kill_job_processes(self._db_tag, running.claimed.id)
            try:
                completion.hand_back(
                    self._connections, running.claimed, "worker shut down before the job finished"
                )
            except LeaseLost:
                pass
            except Exception:
                log.exception("could not hand back job %s", running.claimed.id)
        for thread in self._executors:
            thread.join(1.0)
        self._monitor_stop.set()
        for helper_thread in (self._monitor, self._renewer):
            if helper_thread is not None:
                helper_thread.join(5.0)
        if self._listener is not None:
            self._listener.stop()
            self._listener.join(5.0)
        for helper in (self._wake_listener, self._liveness):
            if helper is not None:
                helper.stop()
                helper.join(5.0)
        self._wake_listener = self._liveness = None
        try:
            with self._db.session(write=True) as session:
                session.execute(delete(WorkerRecord).where(WorkerRecord.id == self.worker_id))
        except Exception:
            log.warning("could not remove worker row %s", self.worker_id, exc_info=True)
        self._connections.close()
        if self._owns_db:
            self._db.dispose()
        self._started = False
        log.info("job worker %s stopped", self.worker_id)

    def run_forever(self, shutdown_timeout: float = 30.0) -> None:
        """Run until SIGTERM or SIGINT (call from the main thread), then ``stop(shutdown_timeout)``."""
        stop_requested = threading.Event()

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s: stopping job worker", signum)
            stop_requested.set()

        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not stop_requested.wait(1.0):
                pass
        finally:
            self.stop(shutdown_timeout)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # ----------------------------------------------------------------- executors

    def _executor_loop(self) -> None:
        while not self._stopping.is_set():
            generation = self._wakeup.generation
            try:
                running = self._claim()
            except Exception:
                log.exception("claiming a job failed; retrying after the poll interval")
                self._stopping.wait(self.poll_interval)
                continue
            if running is None:
                if self._stopping.is_set():
                    return
                self._wakeup.wait(generation, self.poll_interval)
                continue
            claimed = running.claimed
            metrics.CLAIM_LATENCY.labels(kind=claimed.kind).observe(claimed.wait_seconds)
            try:
                if self.mode == "process" and self.registry.get(claimed.kind) is not None:
                    self._run_in_process(running)
                else:
                    self._run_in_thread(running)
            except Exception:
                log.exception("running job %s failed in the worker itself", claimed.id)
            finally:
                with self._lock:
                    self._active.pop(claimed.id, None)

    def _claim(self) -> _Running | None:
        """Claim one job and register it as active, atomically with respect to ``stop()``.

        If stop began while the claim waited (for SQLite's write lock), the job is handed straight
        back: a claim must never outlive its worker as a ``running`` row under a dead owner.
        """
        with self._claims:
            if self._stopping.is_set():
                return None
            self._claims_in_flight += 1
        try:
            claimed = claim_next(self._connections, self.worker_id, self._kinds, self.lease_seconds)
            if claimed is None:
                return None
            in_process = self.mode == "process" and self.registry.get(claimed.kind) is not None
            running = _Running(claimed, cancel=spawn_context().Event() if in_process else threading.Event())
            with self._lock:
                if not self._stopping.is_set():
                    self._active[claimed.id] = running
                    return running
            with contextlib.suppress(LeaseLost):
                completion.hand_back(self._connections, claimed, "claimed while the worker was stopping")
            return None
        finally:
            with self._claims:
                self._claims_in_flight -= 1
                self._claims.notify_all()

    def _run_in_thread(self, running: _Running) -> None:
        claimed = running.claimed
        if claimed.attempt > 1:
            processes.kill_job_processes(
                self._db_tag, claimed.id
            )  # what an earlier attempt's subprocesses left
        try:
            run_claimed(
                self._db,
                claimed,
                self.registry.get(claimed.kind),
                cancel_flag=running.cancel,
                lost_flag=running.lost,
                connections=self._connections,
            )
        finally:
            if processes.take_marked(
                self._db_tag, claimed.id
            ):  # it started subprocesses with ctx.process_env()
                processes.kill_job_processes(self._db_tag, claimed.id)

    def _run_in_process(self, running: _Running) -> None:
        claimed = running.claimed
        spec = self.registry.get(claimed.kind)
        assert spec is not None
        # Whatever an earlier attempt of this job left on this machine (its worker was paused past
        # the lease, or killed) must be gone before this attempt starts.
        if claimed.attempt > 1:
            processes.kill_job_processes(self._db_tag, claimed.id)
        marker = processes.Marker.for_attempt(self._db_tag, claimed.id, claimed.attempt)
        process = spawn_context().Process(
            target=child_main,
            args=(
                self._db.url,
                claimed,
                ChildSpec.of(spec),
                running.cancel,
                os.getpid(),
                str(marker),
                runtime.export_for_child(),
            ),
            name=f"nodewright-job-{claimed.id}",
            daemon=True,
        )
        with self._lock:
            if running.lost.is_set():  # stop() handed it back before the child started
                return
            running.process = process
            process.start()
        try:
            hard_deadline = (
                time.monotonic() + spec.timeout_seconds + PROCESS_KILL_GRACE_SECONDS
                if spec.timeout_seconds
                else None
            )
            overran = False
            while process.is_alive():
                process.join(0.2)
                if running.lost.is_set():
                    process.kill()
                elif hard_deadline is not None and time.monotonic() > hard_deadline:
                    overran = True
                    process.kill()
            process.join()
        finally:
            # The child is gone; so must be everything it started (setsid'd or not).
            processes.kill_job_processes(self._db_tag, claimed.id)
        if running.lost.is_set():
            return
        if overran:
            error = JobError(DEADLINE_EXCEEDED, f"job {claimed.kind} exceeded its time limit")
        elif process.exitcode != 0:
            error = JobError(
                WORKER_LOST, f"the job process exited with code {process.exitcode}", retryable=True
            )
        else:
            return
        # LeaseLost: the child recorded the outcome before dying, or the job was taken over.
        with contextlib.suppress(LeaseLost):
            completion.finish_failed(self._connections, claimed, error, spec)

    # ----------------------------------------------------------------- monitor

    def _renew_loop(self) -> None:
        """Lease renewal and cancel relay, in a thread of their own on a connection of their own:
        a slow sweep, a busy pool or a handler's open transaction must not delay a renewal."""
        tick = max(0.05, min(0.25, self.lease_seconds / 8))
        renew_every = self.lease_seconds / 4
        next_renew = 0.0
        while not self._monitor_stop.wait(tick):
            now = time.monotonic()
            try:
                if now >= next_renew:
                    self._renew_leases()
                    next_renew = now + renew_every
                else:
                    self._watch_cancels()
            except Exception:
                log.exception("job lease renewal failed; retrying")

    def _monitor_loop(self) -> None:
        tick = max(0.05, min(0.5, self.lease_seconds / 4))
        renew_every = self.lease_seconds / 3
        maintain_every = max(0.25, min(self.lease_seconds / 2, self.poll_interval, 5.0))
        prune_every = max(30.0, self.lease_seconds * 2)
        next_maintain = next_prune = next_heartbeat = next_reap = 0.0
        while not self._monitor_stop.wait(tick):
            now = time.monotonic()
            try:
                if now >= next_heartbeat:
                    self._write_worker_row()
                    next_heartbeat = now + renew_every
                if self._maintenance and now >= next_maintain:
                    requeue_expired(self._db)
                    if not self._stopping.is_set():
                        enqueue_periodic(self._db, self.registry)
                    next_maintain = now + maintain_every
                if now >= next_reap:
                    # Job processes whose worker died (SIGKILL) outlive it only until this runs.
                    processes.reap_orphans()
                    next_reap = now + REAP_EVERY_SECONDS
                if self._maintenance and now >= next_prune:
                    prune_workers(self._db, stale_after_seconds=max(60.0, self.lease_seconds * 4))
                    next_prune = now + prune_every
            except Exception:
                log.exception("job monitor iteration failed; continuing")

    def _renew_leases(self) -> None:
        with self._lock:
            running = list(self._active.values())
        if not running:
            return
        with self._connections.begin(write=True) as session:
            for item in running:
                if item.lost.is_set():
                    continue
                if (
                    not self._db.is_sqlite
                    and session.execute(_UNLOCKED, {"id": item.claimed.id}).first() is None
                ):
                    # Row-locked, typically by the attempt's own ctx.transaction(): waiting for it would
                    # stall every other job's renewal behind one handler. Renew it next round.
                    continue
                try:
                    touch = renew_lease(session, item.claimed.fence, self.lease_seconds)
                except LeaseLost:
                    if self._taken_over(session, item.claimed):
                        log.warning("job %s: lease lost; stopping it", item.claimed.id)
                    item.lost.set()
                    if item.process is not None:
                        item.process.kill()
                    continue
                if touch.cancel_requested and not item.cancel.is_set():
                    item.cancel.set()

    @staticmethod
    def _taken_over(session: Any, claimed: ClaimedJob) -> bool:
        """False when the renewal merely raced the attempt's own final write."""
        row = session.execute(select(Job.attempt, Job.lease_owner).where(Job.id == claimed.id)).one_or_none()
        return row is None or row.attempt != claimed.attempt or row.lease_owner != claimed.owner

    def _watch_cancels(self) -> None:
        with self._lock:
            running = {job_id: item for job_id, item in self._active.items() if not item.cancel.is_set()}
        if not running:
            return
        with self._connections.begin() as conn:
            ids = conn.execute(
                select(Job.id).where(Job.id.in_(list(running)), Job.cancel_requested_at.is_not(None))
            ).scalars()
            for job_id in ids:
                running[job_id].cancel.set()

    def _write_worker_row(self) -> None:
        now = utcnow()
        with self._db.session(write=True) as session:
            record = session.get(WorkerRecord, self.worker_id)
            if record is None:
                session.add(
                    WorkerRecord(
                        id=self.worker_id,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        version=__version__,
                        mode=self.mode,
                        concurrency=self.concurrency,
                        started_at=now,
                        heartbeat_at=now,
                    )
                )
            else:
                record.heartbeat_at = now
