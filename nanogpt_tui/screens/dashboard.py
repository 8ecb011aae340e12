"""The dashboard of one run: live loss curves, progress, throughput, GPUs, the latest sample and the log."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.markup import escape
from textual.widgets import Header, ProgressBar, Sparkline, Static

from engine.errors import ConfigError
from engine.runs import RunInfo
from nanogpt_tui.app import error_text
from nanogpt_tui.messages.dashboard import GpuStatsRead, MetricsFollowed, RunConfigRead, RunStatusRead, RunWarned
from nanogpt_tui.messages.runs import PollFailed
from nanogpt_tui.screens.base import AppScreen
from nanogpt_tui.polling import keep_polling, poll
from nanogpt_tui import format as fmt
from nanogpt_tui.gpu import format_gpu_stats, read_gpu_stats
from nanogpt_tui.widgets.log_tail import LogTail
from nanogpt_tui.widgets.loss_plot import MIN_POINTS, LossPlot
from nanogpt_tui.series import RunSeries, SeriesSnapshot
from nanogpt_tui.widgets.footer import KeyBar

# metrics are looked at 4 times a second, so the plot is redrawn at most that often
FOLLOW_INTERVAL_S = 0.25
STATUS_EVERY_TICKS = 4
GPU_POLL_S = 2.0
FAILED_LOG_LINES = 8
PROGRESS_UNITS = 1000  # the bar counts thousandths of the run, whichever bound (steps, time) ends it


class DashboardScreen(AppScreen[None]):
    """Follows one run through its run directory; works the same for a run started by another process."""
    CSS_PATH = "css/dashboard.tcss"  # loaded when the screen is first shown, not for the first frame

    HELP_TITLE = "Dashboard"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("s", "stop_run", "Stop"),
        Binding("r", "resume_run", "Resume"),
        Binding("x", "toggle_plot('by_tokens')", "Steps/tokens"),
        Binding("g", "toggle_plot('log_scale')", "Log scale"),
        Binding("m", "toggle_plot('smooth')", "Smoothing"),
        Binding("f", "follow_log", "Follow log"),
        Binding("l", "open_log", "Full log"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.run_name = name
        self._info: RunInfo | None = None
        self._snapshot: SeriesSnapshot | None = None
        # the run stops after this many seconds (0 = no budget), which caps the ETA
        self._time_budget_s = 0.0
        # what each Static shows, so a tick that changes nothing redraws nothing
        self._shown: dict[str, str] = {}
        # read by the follow worker: how many points per curve are worth sending
        self._max_points = MIN_POINTS

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="run-bar"):
            yield Static(self.run_name, id="run-title")
            yield ProgressBar(show_eta=False, id="progress")
            yield Static("", id="eta")
        yield Static("", id="outcome")
        with Horizontal(id="dash-main"):
            yield LossPlot("loss", id="loss-plot")
            with Vertical(id="dash-side"):
                yield Static("waiting for the first metrics…", id="stats")
                yield Static("tokens/s", classes="caption")
                yield Sparkline([], id="tokens-per-s")
                yield Static("", id="gpu")
                yield Static("", id="sample")
        yield LogTail(id="log-tail")
        yield KeyBar()

    def on_mount(self) -> None:
        self._follow()
        self._poll_gpu()
        self.query_one(LogTail).follow(self.engine.run_dir(self.run_name) / "train.log")

    @on(Resize)
    def _resized(self) -> None:
        self._max_points = self.query_one(LossPlot).max_points

    @work(thread=True, exclusive=True, group="follow", exit_on_error=False)
    def _follow(self) -> None:
        engine, name = self.engine, self.run_name
        try:
            self.post_message(RunConfigRead(engine.config(name)))
        except ConfigError as err:
            self.post_message(RunConfigRead(None, err.message))
        reader, series = engine.metrics_reader(name), RunSeries()
        ticks = 0

        def tick() -> None:
            nonlocal ticks
            ticks += 1
            events = reader.read_new()
            for event in events:
                if event["kind"] == "status" and event.get("state") == "running" and "failed" in str(event.get("message")):
                    self.post_message(RunWarned(f"step {event['step']}: {event['message']}"))
            if events or ticks == 1:
                series.add(events)
                self.post_message(MetricsFollowed(series.snapshot(self._max_points)))
            if (ticks - 1) % STATUS_EVERY_TICKS == 0:
                self.post_message(RunStatusRead(engine.get(name)))

        poll(FOLLOW_INTERVAL_S, tick, lambda err: self.post_message(PollFailed(err)))

    @on(PollFailed)
    def _poll_failed(self, event: PollFailed) -> None:
        text = error_text(event.error)
        self._show("#outcome", f"Cannot read the run now: {text}", layout=True)
        outcome = self.query_one("#outcome", Static)
        outcome.display = True
        outcome.set_class(True, "failed")

    @work(thread=True, exclusive=True, group="gpu", exit_on_error=False)
    def _poll_gpu(self) -> None:
        while True:
            stats = read_gpu_stats()
            self.post_message(GpuStatsRead(stats))
            if isinstance(stats, str) or not keep_polling(GPU_POLL_S):
                return

    @on(RunWarned)
    def _warned(self, event: RunWarned) -> None:
        self.notify(event.text, title="Run warning", severity="warning", timeout=15)

    @on(MetricsFollowed)
    def _metrics(self, event: MetricsFollowed) -> None:
        snap = self._snapshot = event.snapshot
        self.query_one(LossPlot).set_curves({"train": snap.train, "val": snap.val})
        self.query_one("#tokens-per-s", Sparkline).data = list(snap.tokens_per_s)
        val = fmt.loss(snap.last_val_loss)
        if snap.last_val_bpb is not None:
            val += f" ({snap.last_val_bpb:.3f} bpb)"
        lr = "—" if snap.lr is None else f"×{snap.lr:.3f}"
        self._show("#stats", f"loss  {fmt.loss(snap.last_loss)}\nval   {val}\nlr    {lr}\n"
                             f"tok/s {fmt.rate(snap.last_tokens_per_s)}")
        if snap.sample:
            self._show("#sample", f"[b]sample at step {snap.sample_step}[/b]\n{escape(snap.sample)}")
        self._show_progress()

    def _show(self, selector: str, text: str, layout: bool = False) -> None:
        """Update a Static only when its text changes; fixed-size ones skip the layout pass."""
        if self._shown.get(selector) != text:
            self._shown[selector] = text
            self.query_one(selector, Static).update(text, layout=layout)

    @on(RunConfigRead)
    def _config(self, event: RunConfigRead) -> None:
        if event.config is None:
            self.notify(f"The run's config cannot be read, so the ETA ignores any time budget: {event.error}",
                        severity="warning")
            return
        self._time_budget_s = event.config.train.time_budget_s
        self._show_progress()

    @on(RunStatusRead)
    def _status(self, event: RunStatusRead) -> None:
        self._info = info = event.info
        self.notify_file_problems(f"{info.name}/{problem}" for problem in info.problems)
        style = fmt.STATE_STYLES.get(info.state, "")
        # the state first: a long run name is cut at the bar, and the state is what the title is read for
        self._show("#run-title", f"[{style}]{info.state}[/] · [b]{info.name}[/b] · {escape(info.preset)}")
        outcome = self.query_one("#outcome", Static)
        outcome.display = info.state in ("finished", "failed", "stopped")
        outcome.set_class(info.state == "failed", "failed")
        self._show("#outcome", self._outcome_text(info), layout=True)
        self._show_progress()

    def _outcome_text(self, info: RunInfo) -> str:
        if info.state == "finished":
            ended = " (its time budget ended it)" if info.ended_by_time else ""
            return f"Finished at step {info.step}{ended}."
        if info.state == "stopped":
            return f"Stopped at step {info.step}; press r to resume from its last checkpoint."
        if info.state != "failed":
            return ""
        last_lines = [line for line in self.query_one(LogTail).lines if line.strip()][-FAILED_LOG_LINES:]
        reason = info.message.splitlines()[0] if info.message else "no reason recorded"
        # the message and the log are the run's text, not markup
        return escape("\n".join([f"Failed: {reason}", *last_lines]))

    def _show_progress(self) -> None:
        info, snap = self._info, self._snapshot
        if info is None:
            return
        step = max(info.step, snap.step if snap else 0)
        running = info.state == "running"
        elapsed = self.nanogpt.clock() - info.started_at if running and info.started_at is not None else None
        # the bar follows whichever bound ends the run: steps, or the time budget
        fraction = max(info.fraction, step / info.total_steps if info.total_steps else 0.0)
        if running and snap is not None and snap.progress is not None:
            fraction = max(fraction, snap.progress)
        elif running and self._time_budget_s and elapsed is not None and step > 0:
            # a trainer that does not record its progress: the wall clock since the start bounds it
            # (not before its first step: starting up, the tokenizer and the first validation are not training)
            fraction = max(fraction, elapsed / self._time_budget_s)
        fraction = min(1.0, fraction)
        bar = self.query_one(ProgressBar)
        if (bar.total, bar.progress) != (PROGRESS_UNITS, round(fraction * PROGRESS_UNITS)):
            bar.update(total=PROGRESS_UNITS, progress=round(fraction * PROGRESS_UNITS))
        eta = "—"
        if running and snap is not None and snap.step_time_ms and info.total_steps:
            seconds = max(0, info.total_steps - step) * snap.step_time_ms / 1000
            if self._time_budget_s and elapsed is not None:
                seconds = min(seconds, max(0.0, self._time_budget_s - elapsed))
            eta = fmt.duration(seconds)
        total = f"/{info.total_steps}" if info.total_steps else ""
        self._show("#eta", f"step {step}{total} · ETA {eta}")

    @on(GpuStatsRead)
    def _gpu(self, event: GpuStatsRead) -> None:
        self._show("#gpu", format_gpu_stats(event.devices), layout=True)

    def action_toggle_plot(self, setting: str) -> None:
        self.query_one(LossPlot).toggle(setting)

    def action_follow_log(self) -> None:
        following = self.query_one(LogTail).toggle_follow()
        self.notify(f"Following the log: {'on' if following else 'off'}")

    def action_open_log(self) -> None:
        from nanogpt_tui.screens.log import LogScreen

        self.app.push_screen(LogScreen(self.run_name))

    def action_back(self) -> None:
        self.dismiss()

    def action_stop_run(self) -> None:
        if self._info is None or self._info.state != "running":
            self.notify("The run is not running.", severity="warning")
            return
        self.run_engine_action("stop requested: the run saves a checkpoint and stops", self.run_name, self.engine.stop)

    def action_resume_run(self) -> None:
        if self._info is not None and self._info.state == "running":
            self.notify("The run is already running.", severity="warning")
            return
        self.resume_run(self.run_name, self._info.state if self._info is not None else "")
