"""The window's playback controller (a mixin of :class:`app.main_window.MainWindow`): runs
of the pipeline worker, transport, seeking, frame steps, speed and loop.

A seek (the seek bar, a step back, a model or back-end change that keeps the position)
starts a new run at the frame asked for (``engine.sources.open_source(start_frame=)``):
OpenCV decodes up to that exact frame, and the pipeline starts a new scene there. A step
forward while paused lets the running worker show one more frame. The state a user sees
(paused or playing, the position) carries over a seek.
"""
from __future__ import annotations

from app.menus import SPEEDS
from app.settings import SAMPLE_SOURCE
from app.source_picker import resolve_spec
from app.worker import PipelineWorker, SourceInfo, WorkerThread
from engine.pipeline import EndReason, RunOutcome


def skipped_text(outcome: RunOutcome) -> str:
    """'; <first problem> (and N more)' for what the source skipped (unreadable photos)."""
    if not outcome.warnings:
        return ""
    more = f" (and {len(outcome.warnings) - 1} more)" if len(outcome.warnings) > 1 else ""
    return f"; {outcome.warnings[0]}{more}"


class PlaybackMixin:
    """Needs: pipeline, picker, cameras, opener, settings, seekbar, stats, menus, renderer(),
    show_message / show_error, _sync_controls, _update_stats, _save."""

    # -- runs -----------------------------------------------------------------------------

    def play_source(self, spec: str, remember: bool = True, note: str = "", start_frame: int = 0,
                    paused: bool = False) -> None:
        """Stop what plays and play ``spec`` ('sample', 'camera:NAME' or a path) from
        ``start_frame`` (paused on it if ``paused``). It becomes the remembered source once
        it has opened if ``remember``; ``note`` says why it plays (e.g. instead of a
        remembered source that is gone)."""
        seek = bool(start_frame) or paused
        self.picker.show_spec(spec)
        self._stop_run()
        if self.pipeline is None:
            self.show_error("No model", "No model is loaded: open one with File ▸ Open model….")
            return
        target, loop = resolve_spec(spec, self.cameras)
        worker = PipelineWorker(self.pipeline, target, loop=loop or self.settings.loop, opener=self.opener,
                                renderer=self.renderer(), start_frame=start_frame, start_paused=paused,
                                speed=self.settings.speed)
        # bound methods, not lambdas: a lambda would run in the worker's thread
        worker.opened.connect(self._opened)
        worker.result.connect(self._show_result)
        worker.error.connect(self._run_error)
        worker.recording.connect(self._recording_event)
        worker.finished.connect(self._run_finished)
        self._run = WorkerThread(worker)
        self._run_spec, self._run_remember, self._run_note = spec, remember, note
        self.stats.reset()
        self._run.start()
        if not seek:
            what = spec if spec != SAMPLE_SOURCE else "the sample video"
            self.show_message(f"{note}; opening {what} instead…" if note else f"Opening {what}…")
            self._add_recent(spec)
        self._update_stats(force=True)
        self._sync_controls()

    def _is_current(self, worker) -> bool:
        return self._run is not None and worker is self._run.worker

    def _opened(self, info: SourceInfo) -> None:
        if not self._is_current(self.sender()):
            return
        if self._run_remember:
            self.settings = self.settings.replace(source=self._run_spec)
            self._save()
        self.source_info = info
        self.seekbar.set_source(None if info.is_live else info.frame_count, info.fps, info.stills)
        kind = "live" if info.is_live else f"{info.fps:.3g} fps"
        what = f"{info.source_id} ({info.size_wh[0]}×{info.size_wh[1]}, {kind})"
        self._playing_text = f"{self._run_note}; playing {what} instead" if self._run_note else f"Playing {what}"
        if not self._run.worker.start_frame and not self._run.worker.paused:
            self.show_message(self._playing_text)
        self._sync_controls()

    def is_running(self) -> bool:
        return self._run is not None and self._run.is_running()

    def is_paused(self) -> bool:
        return self.is_running() and self._run.worker.paused

    def _stop_run(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            self._retired.append(run)
            if not run.stop():
                self.show_error("Stop", "The video thread did not stop within 10 s.")
        self._sync_controls()

    def _run_error(self, why: str) -> None:
        if self._is_current(self.sender()):
            self.show_error("Playback stopped", why)

    def _run_finished(self, outcome: RunOutcome) -> None:
        worker = self.sender()
        if self._is_current(worker):
            self._run.thread.wait(2000)
            if outcome.reason is EndReason.FINISHED:
                self.show_message(f"Finished: end of {outcome.source_id}" + skipped_text(outcome))
            elif outcome.reason is not EndReason.STOPPED and not self.message_label.is_error():
                self.show_error("Playback ended", outcome.detail or outcome.source_id)  # a truncated file, ...
            self._retired.append(self._run)
            self._run = None
        # the run's last signal has arrived: now it can be freed
        self._retired = [r for r in self._retired if r.worker is not worker]
        self._update_stats(force=True)
        self._sync_controls()

    # -- transport --------------------------------------------------------------------------

    def play(self) -> None:
        if self.is_running():
            self._run.worker.set_paused(False)
            self.show_message(self._playing_text or "Playing")
            self._sync_controls()
        else:  # stopped or ended: from the start, as players do
            self.play_source(self.picker.current_spec())

    def pause(self) -> None:
        if self.is_running():
            self._run.worker.set_paused(True)
            self.show_message("Paused")
            self._sync_controls()

    def play_pause(self) -> None:
        self.play() if not self.is_running() or self.is_paused() else self.pause()

    def stop(self) -> None:
        if self.is_running():
            self._stop_run()
            self.show_message("Stopped")
            self._update_stats(force=True)

    # -- position ---------------------------------------------------------------------------

    def current_frame(self) -> int:
        return self.last_shown.result.frame.index if self.last_shown is not None else 0

    def seek(self, frame: int, paused: bool | None = None) -> None:
        """Show ``frame`` of the open file or folder; playing or paused as before unless
        ``paused`` says."""
        if not self.seekbar.seekable():
            return
        frame = max(0, min(int(frame), self.seekbar.slider.maximum()))
        if paused is None:
            paused = not self.is_running() or self.is_paused()
        self.play_source(self._run_spec or self.picker.current_spec(), self._run_remember, self._run_note,
                         start_frame=frame, paused=paused)
        if paused:
            self.show_message("Paused")

    def seek_start(self) -> None:
        self.seek(0)

    def step_forward(self) -> None:
        """The next frame (image), then paused."""
        if self.is_running():
            self._run.worker.step()
            self.show_message("Paused")
            self._sync_controls()
        elif self.last_shown is not None:
            self.seek(self.current_frame() + 1, paused=True)

    def step_back(self) -> None:
        if self.last_shown is not None:
            self.seek(self.current_frame() - 1, paused=True)
            self.show_message("Paused")

    def set_speed(self, speed: float) -> None:
        self.settings = self.settings.replace(speed=float(speed))
        self._save()
        if self._run is not None:
            self._run.worker.speed = self.settings.speed
        self.seekbar.show_speed(self.settings.speed)
        self._sync_controls()

    def change_speed(self, direction: int) -> None:
        k = min(range(len(SPEEDS)), key=lambda i: abs(SPEEDS[i] - self.settings.speed))
        self.set_speed(SPEEDS[max(0, min(len(SPEEDS) - 1, k + direction))])
        self.show_message(f"Speed {self.settings.speed:g}×")

    def set_loop(self, on: bool) -> None:
        self.settings = self.settings.replace(loop=bool(on))
        self._save()
        if self.is_running() and self.seekbar.seekable():  # the source loops from its open: reopen here
            self.seek(self.current_frame() + 1)
        self._sync_controls()

