"""The worker: trains queued MLflow runs, each in its own process, in the shape of rq's worker.

`work()` loops: reap ended children, pass on cancel requests, heartbeat the runs it owns, claim
and start the oldest SCHEDULED runs while slots are free, now and then end orphans of dead
workers. Signal handlers only set flags: the first SIGTERM/SIGINT stops taking runs and waits for
the running ones (warm stop), the second stops those too (cold stop: they end KILLED). With
`cold_stop` the first signal stops cold: `make run`'s Ctrl-C stops everything at once (Procfile).
A run whose process or worker died is requeued as its next attempt (jobs.retry), which resumes
from its checkpoint, up to RUNBOARD_MAX_ATTEMPTS attempts.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass

from mlflow.exceptions import MlflowException

from pipeline import errors, names, settings
from pipeline.config import ConfigError
from pipeline.queue import jobs, study
from pipeline.queue import launcher as launchers
from pipeline.runs import lifecycle, tracking

POLL_SECONDS = 0.5          # between looks at the children and (when the store changed) the queue
FULL_POLL_SECONDS = 10.0    # query a local store's queue at least this often, even when it looks unchanged
REMOTE_POLL_SECONDS = 2.0   # between queue queries to a tracking server (no cheap change check there)
HEARTBEAT_SECONDS = 3.0     # between heartbeat and log-tail tags on each run this worker owns
REAP_SECONDS = 30.0         # between looks for runs left behind by dead workers (also once at start)
CANCEL_GRACE_SECONDS = 30.0  # between SIGTERM and SIGKILL: ending a run cleanly takes seconds on a busy CPU
ERROR_BACKOFF_SECONDS = 5.0  # after a failed loop (store unreachable) before the next try
STUDY_SECONDS = 2.0         # between looks at running studies (at once when a run ended): see queue/study.py

log = logging.getLogger("runboard.worker")


@dataclass
class Active:
    run_id: str
    experiment_id: str
    job: launchers.Job
    slot: int
    started: float                  # time.monotonic() at launch
    attempt: int = 1                # the run's attempt this process trains: a resume queues the next one
    stop_reason: str | None = None  # set when the worker asked it to stop: it then ends KILLED
    stop_sent: float = 0.0          # time.monotonic() of the SIGTERM
    killed: bool = False            # SIGKILL sent after the grace period
    tail_sent: str = ""


def describe_exit(code: int) -> str:
    """Why a training process ended without ending its run, in words."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the out-of-memory killer sends SIGKILL)" if -code == signal.SIGKILL else ""
        return f"the training process was killed by {name}{hint}"
    return f"the training process exited with code {code} without ending its run"


class Worker:
    def __init__(self, concurrency: int | None = None, launcher: launchers.Launcher | None = None,
                 poll_seconds: float = POLL_SECONDS, experiment: str | None = None, cold_stop: bool = False):
        self.client = tracking.connect()
        self.experiment = experiment  # None: every experiment's runs; a name: only that one's (and its orphans)
        self.cold_stop = cold_stop
        self.concurrency = max(1, concurrency or settings.worker_concurrency())
        self.launcher = launcher or launchers.from_settings(self.concurrency)
        self.poll_seconds = poll_seconds
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.active: dict[str, Active] = {}
        self.stopping: str | None = None  # None, "warm" or "cold"
        self.started = 0
        self._stamp, self._queried = None, -FULL_POLL_SECONDS
        self._announced: str | None = None
        self._blocked: str | None = None  # the launcher's reason it cannot start runs now
        self._told: bool | None = None  # whether queued runs carry that reason (None: not looked yet)
        self._told_at = -FULL_POLL_SECONDS  # runs queued while blocked get it within FULL_POLL_SECONDS
        self.open_studies, self._next_study = 0, 0.0

    # --- signals: flags only -----------------------------------------------------------------
    def request_stop(self, signum=None, frame=None) -> None:
        """The signal handler: first call warm stop (cold with `cold_stop`), second cold. Only a flag."""
        self.stopping = "cold" if self.stopping or self.cold_stop else "warm"

    def _announce_stop(self) -> None:
        if self.stopping == self._announced:
            return
        self._announced = self.stopping
        if self.stopping == "warm":
            log.info("warm stop: no new runs; waiting for %d running (signal again to stop them now)",
                     len(self.active))
        else:
            log.info("cold stop: stopping %d running run(s); they end KILLED", len(self.active))

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

    # --- the loop ----------------------------------------------------------------------------
    def work(self, burst: bool = False, max_jobs: int | None = None) -> int:
        """Run until stopped (or, with `burst`, until the queue is empty); returns how many runs it started."""
        self._install_signal_handlers()
        log.info("worker %s: %d slot(s), store %s%s%s", self.name, self.concurrency, settings.tracking_uri(),
                 f", experiment {self.experiment!r} only" if self.experiment is not None else "",
                 " (burst)" if burst else "")
        next_beat = next_reap = 0.0
        while True:
            took = None
            self._announce_stop()
            try:
                self._check_children()
                self._pass_on_stops()
                now = time.monotonic()
                if now >= next_reap:
                    self.reap_orphans()
                    next_reap = now + REAP_SECONDS
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + HEARTBEAT_SECONDS
                if now >= self._next_study and not self.stopping:  # a study's next trials, or its end
                    self.open_studies = study.drive(self.client, self.experiment)
                    self._next_study = now + STUDY_SECONDS
                took = self._start_queued(max_jobs)
                free = self._free_slots()
                if free and not burst and not self.stopping and (max_jobs is None or self.started < max_jobs):
                    self.launcher.warm(free[0])  # the next launch starts warm
            except Exception:  # the store blinked (locked, restarting server): keep the runs, try again
                log.exception("worker loop error; retrying in %.0f s", ERROR_BACKOFF_SECONDS)
                time.sleep(ERROR_BACKOFF_SECONDS)
            done_taking = self.stopping or (max_jobs is not None and self.started >= max_jobs) or (
                burst and took == 0 and not self.open_studies)  # a study may still be due trials
            if not self.active and done_taking:
                break
            time.sleep(0.2 if self.stopping else self.poll_seconds)
        self.launcher.close()
        log.info("worker %s stopped after starting %d run(s)", self.name, self.started)
        return self.started

    def _start_queued(self, max_jobs: int | None) -> int | None:
        """Claim and launch the oldest queued runs while slots are free; how many it took (None: not looked)."""
        if self.stopping:
            return 0
        blocked = getattr(self.launcher, "blocked", lambda: None)()
        if blocked != self._blocked:  # said once when it starts, once when it ends
            if blocked:
                log.error("not taking queued runs: %s", blocked)
            else:
                log.info("taking queued runs again")
            self._blocked, self._queried = blocked, -FULL_POLL_SECONDS  # unblocked: look at the queue at once
        self._say_blocked(blocked)
        if blocked:
            return 0  # the runs wait, queued, rather than each failing on the same misconfiguration
        if not self._queue_may_have_changed():
            return None
        took = 0
        for run in jobs.queued(self.client, self.experiment):
            free = self.concurrency - len(self.active)
            if free <= 0 or (max_jobs is not None and self.started >= max_jobs):
                break
            if lifecycle.Claim.of(run) is not None or run.info.run_id in self.active:
                continue  # someone else's (a worker's, or a cancel's), or resumed while its last attempt exits
            run_id = run.info.run_id
            if lifecycle.claim(self.client, run_id, self.name, lifecycle.attempt_of(run)):
                self.started += 1
                took += 1
                try:
                    self._launch(run_id)
                except Exception as e:  # claimed, so no other worker will: end it rather than strand it
                    log.exception("run %s could not be started", run_id)
                    lifecycle.finish(self.client, run_id, names.FAILED, f"the worker could not start it: {e}")
        return took

    def _free_slots(self) -> list[int]:
        return sorted(set(range(self.concurrency)) - {a.slot for a in self.active.values()})

    def _queue_may_have_changed(self) -> bool:
        """Whether to query the queue now: a local store's files changed, or it is time to look anyway."""
        stamp, now = tracking.store_stamp(), time.monotonic()
        if stamp is None:
            due = now - self._queried >= REMOTE_POLL_SECONDS
        else:
            due = stamp != self._stamp or now - self._queried >= FULL_POLL_SECONDS
        if not due:
            return False
        self._stamp, self._queried = stamp, now  # taken before the query: a write during it shows next time
        return True

    def _launch(self, run_id: str) -> None:
        client = self.client
        lifecycle.heartbeat(client, run_id, {names.TAG_WORKER: self.name})
        run = client.get_run(run_id)
        if run.info.status != names.SCHEDULED:
            log.warning("run %s is %s, no longer queued; not starting it", run_id, run.info.status)
            return
        if names.TAG_CANCEL in run.data.tags:
            lifecycle.finish(client, run_id, names.KILLED, "cancelled before it started")
            return
        try:
            lifecycle.config_of(client, run)  # refused now rather than in the child
        except ConfigError as e:  # e.g. its weights file was deleted after it was queued
            lifecycle.finish(client, run_id, names.FAILED, f"invalid config: {e}")
            log.warning("run %s FAILED before starting: %s", run_id, e)
            return
        slot = self._free_slots()[0]
        lifecycle.mark_running(client, run_id, {})  # before the child starts: it may end the run first
        try:
            job = self.launcher.start(run_id, slot)
        except OSError as e:
            lifecycle.finish(client, run_id, names.FAILED, f"the training process could not start: {e}")
            return
        self.active[run_id] = Active(run_id, run.info.experiment_id, job, slot, time.monotonic(),
                                     lifecycle.attempt_of(run))
        if job.pid:
            lifecycle.set_tags(client, run_id, {names.TAG_PID: job.pid})
        log.info("run %s (%s) started in slot %d", run_id, run.info.run_name, slot)

    def _check_children(self) -> None:
        for run_id, active in list(self.active.items()):
            code = active.job.poll()
            if code is not None:
                self._finish(active, code)
                del self.active[run_id]
                self._stamp, self._queried = None, -FULL_POLL_SECONDS  # a free slot: look at the queue now
                self._next_study = 0.0  # ...and at the studies, which may be due a trial or their end

    def _finish(self, active: Active, code: int) -> None:
        """The child ended: make the run's status honest, keep its log as an artifact."""
        client, run_id = self.client, active.run_id
        run = client.get_run(run_id)
        if lifecycle.attempt_of(run) != active.attempt:  # it ended itself, and was resumed before we saw it exit
            active.job.close()
            log.info("run %s: attempt %d ended (exit code %s); attempt %d is queued, so its status is left as it is",
                     run_id, active.attempt, code, lifecycle.attempt_of(run))
            return
        status = run.info.status
        tail = launchers.log_tail(active.job.log_path, lifecycle.TRACEBACK_TAG_CHARS)
        if status in names.ACTIVE:  # it died without ending its run (kill -9, OOM, crash before start)
            if active.stop_reason:
                status = names.KILLED
                lifecycle.finish(client, run_id, status, active.stop_reason)
            else:
                status = names.FAILED
                if code == errors.USAGE:  # refused its input before training: another attempt changes nothing
                    lifecycle.set_tags(client, run_id, {names.TAG_RETRY: "no"})
                reason = getattr(active.job, "reason", None) or describe_exit(code)  # a cluster's own words
                lifecycle.finish(client, run_id, status, reason, tail)
        elif status == names.KILLED and active.stop_reason:
            lifecycle.set_tags(client, run_id, {names.TAG_ERROR: active.stop_reason})  # why, not just "signal"
        elif status == names.FAILED and active.stop_reason:  # it broke while stopping at our request (a signal
            status = names.KILLED  # mid-step): stopped, resumable by hand, never requeued as a failure
            lifecycle.finish(client, run_id, status, active.stop_reason)
        lifecycle.set_tags(client, run_id, {names.TAG_LOG_TAIL: tail[-launchers.LOG_TAIL_CHARS:]})
        try:
            lifecycle.attach_log(client, run_id, active.job.log_path)
            active.job.close()
        except Exception:  # the log stays on disk; the run's status is already right
            log.exception("could not upload the log of run %s (kept at %s)", run_id, active.job.log_path)
        log.info("run %s ended %s (exit code %s) after %.0f s", run_id, status, code, time.monotonic() - active.started)
        if status == names.FAILED:
            self._retry(run_id)

    def _retry(self, run_id: str) -> None:
        attempt = jobs.retry(self.client, run_id)
        if attempt:
            log.info("run %s requeued as attempt %d: it resumes from its checkpoint", run_id, attempt)

    def _pass_on_stops(self) -> None:
        """SIGTERM children whose run was cancelled (or the worker is stopping cold); SIGKILL after the grace."""
        now = time.monotonic()
        requests = self._stop_requests() if self.stopping != "cold" else {}
        for active in self.active.values():
            if active.stop_reason is None:
                reason = "stopped: the worker was shut down" if self.stopping == "cold" else None
                tags = requests.get(active.run_id, {})
                if names.TAG_CANCEL in tags:
                    reason = "cancelled"
                elif names.TAG_ORPHANED in tags:  # another worker gave up on us (we were cut off): stop
                    reason = f"stopped: declared orphaned by {tags[names.TAG_ORPHANED]}"
                if reason:
                    log.info("run %s: %s; sending SIGTERM", active.run_id, reason)
                    active.stop_reason, active.stop_sent = reason, now
                    active.job.terminate()
            elif now - active.stop_sent > CANCEL_GRACE_SECONDS and not active.killed:
                log.warning("run %s did not stop within %.0f s; sending SIGKILL", active.run_id, CANCEL_GRACE_SECONDS)
                active.stop_reason += f" (killed: it did not stop within {CANCEL_GRACE_SECONDS:.0f} s of SIGTERM)"
                active.killed = True
                active.job.kill()

    def _stop_requests(self) -> dict[str, dict[str, str]]:
        """run id -> tags of the runs this worker trains and has not asked to stop yet: one query."""
        waiting = [a for a in self.active.values() if a.stop_reason is None]
        if not waiting:
            return {}
        ids = ", ".join(f"'{a.run_id}'" for a in waiting)
        runs = self.client.search_runs(sorted({a.experiment_id for a in waiting}), f"attributes.run_id IN ({ids})")
        return {r.info.run_id: r.data.tags for r in runs}

    def _say_blocked(self, reason: str | None) -> None:
        """Put the reason on every queued run while the launcher cannot start runs, so the dashboard's queue says
        why they wait (a worker's log is on another machine); take it off once it can, and at start (a worker
        stopped while blocked leaves it behind)."""
        now = time.monotonic()
        if (reason is None and self._told is False) or (reason and now - self._told_at < FULL_POLL_SECONDS):
            return
        self._told_at = now if reason else -FULL_POLL_SECONDS
        for run in jobs.queued(self.client, self.experiment):
            said = run.data.tags.get(names.TAG_BLOCKED)
            try:
                if reason and said != reason:
                    lifecycle.set_tags(self.client, run.info.run_id, {names.TAG_BLOCKED: reason})
                elif reason is None and said is not None:
                    self.client.delete_tag(run.info.run_id, names.TAG_BLOCKED)
            except MlflowException:
                pass  # the run was taken or deleted meanwhile
        self._told = bool(reason)

    def _heartbeat(self) -> None:
        for active in self.active.values():
            tags = {}
            tail = launchers.log_tail(active.job.log_path)
            if tail != active.tail_sent:
                tags[names.TAG_LOG_TAIL] = active.tail_sent = tail
            lifecycle.heartbeat(self.client, active.run_id, tags)

    def reap_orphans(self) -> int:
        """End unfinished queue runs whose worker is gone: FAILED (KILLED if a cancel had claimed them);
        a FAILED one is then requeued while it has attempts left."""
        ended = 0
        now = time.time()
        for run in jobs.unfinished(self.client, self.experiment):
            run_id = run.info.run_id
            reason = None if run_id in self.active else jobs.orphan_reason(run, now)
            if reason is None or self._adopt(run):
                continue
            owner = lifecycle.Claim.of(run)
            local_log = settings.run_log(run_id)  # there when it ran on this machine
            lifecycle.set_tags(self.client, run_id, {names.TAG_ORPHANED: self.name})
            if owner and owner.owner == jobs.CANCEL_OWNER:
                lifecycle.finish(self.client, run_id, names.KILLED, reason)
            else:
                lifecycle.finish(self.client, run_id, names.FAILED, f"orphaned: {reason}",
                                 launchers.log_tail(local_log, lifecycle.TRACEBACK_TAG_CHARS))
            if local_log.exists():
                lifecycle.attach_log(self.client, run_id, local_log)
                local_log.unlink()
            log.warning("run %s ended: %s", run_id, reason)
            ended += 1
            if owner and owner.owner != jobs.CANCEL_OWNER:  # it was training: resume it
                self._retry(run_id)
        return ended

    def _adopt(self, run) -> bool:
        """Take over a run whose worker died while its job trains on (a Ray job outlives its worker)."""
        adopt, claim = getattr(self.launcher, "adopt", None), lifecycle.Claim.of(run)
        if adopt is None or run.info.status != names.RUNNING or claim is None or claim.owner == jobs.CANCEL_OWNER:
            return False
        job = adopt(run)
        if job is None:
            return False
        run_id = run.info.run_id
        lifecycle.heartbeat(self.client, run_id, {names.TAG_WORKER: self.name,
                                                  names.TAG_ADOPTED: f"{self.name} {lifecycle.process_key()}"})
        slot = (self._free_slots() or [max(a.slot for a in self.active.values()) + 1])[0]
        self.active[run_id] = Active(run_id, run.info.experiment_id, job, slot, time.monotonic(),
                                     lifecycle.attempt_of(run))
        log.info("run %s: adopted from %s (its job still runs)", run_id, claim.owner)
        return True
