"""TUI figures: time to the first frame, idle CPU with the runs screen open, CPU while a dashboard follows a run.

Each measurement starts the real app (`python -m nanogpt_tui`) in a pseudo-terminal of 120x40 with its own
NANOGPT_TUI_HOME, and reads the app process's CPU time from /proc. The first frame is also timed for a
bare Textual app with the same header, table columns and keys (Textual's own floor on this machine),
interleaved with ours, so the ratio holds on a slow or busy machine too. The last line printed is
`first_frame_s=… textual_floor_s=… first_frame_ratio=… idle_cpu_pct=… follow_cpu_pct=…`.
`--quick` shortens every phase.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COLUMNS, ROWS = 120, 40
LINES_PER_S = 20
CTRL_Q = b"\x11"
# texts of the runs screen's first frame: the title in the header and the table's last column
FIRST_FRAME_MARKERS = (b"nanogpt-tui", b"Curve")


class AppInPty:
    """The app as a user runs it: its own terminal, output drained so it never blocks."""

    def __init__(self, home: Path, extra_env: dict[str, str] | None = None, argv: list[str] | None = None) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        env = dict(os.environ, NANOGPT_TUI_HOME=str(home), TERM="xterm-256color", COLUMNS=str(COLUMNS),
                   LINES=str(ROWS), **(extra_env or {}))
        self.started = time.perf_counter()
        self.process = subprocess.Popen(argv or [sys.executable, "-m", "nanogpt_tui"], stdin=slave, stdout=slave,
                                        stderr=slave, env=env, cwd=REPO, start_new_session=True)
        os.close(slave)
        self.output = bytearray()
        self.first_frame_at: float | None = None
        self.first_frame_cpu: float | None = None
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            if self.first_frame_at is None:
                self.output += chunk
                if all(marker in self.output for marker in FIRST_FRAME_MARKERS):
                    self.first_frame_at = time.perf_counter()
                    self.first_frame_cpu = self.cpu_seconds()

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def cpu_percent(self, seconds: float) -> float:
        """CPU use of the app over `seconds`, in percent of one core."""
        cpu_start, wall_start = self.cpu_seconds(), time.perf_counter()
        time.sleep(seconds)
        return 100 * (self.cpu_seconds() - cpu_start) / (time.perf_counter() - wall_start)

    def close(self) -> None:
        if self.process.poll() is None:
            self.send(CTRL_Q)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)  # it ends when the terminal closes with the app
        os.close(self.master)


def write_run(runs: Path, name: str, state: str, pid: int | None, steps: int, created_at: float) -> Path:
    run_dir = runs / name
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"name": name, "kind": "pretrain", "preset": "shakespeare-cpu",
                                                  "created_at": created_at, "nproc": 1, "total_steps": 100_000}))
    (run_dir / "status.json").write_text(json.dumps({"state": state, "pid": pid, "started_at": created_at,
                                                     "ended_at": None if state == "running" else created_at + 60,
                                                     "step": steps, "total_steps": 100_000}))
    with open(run_dir / "metrics.jsonl", "w") as handle:
        handle.writelines(metric_line(step) + "\n" for step in range(1, steps + 1))
    (run_dir / "train.log").write_text("".join(f"step {s}\n" for s in range(1, steps + 1)))
    return run_dir


def metric_line(step: int) -> str:
    if step % 50 == 0:
        return json.dumps({"t": time.time(), "step": step, "kind": "val", "val_loss": 4 / (1 + step / 500),
                           "val_bpb": 1.2, "tokens": step * 4096})
    return json.dumps({"t": time.time(), "step": step, "kind": "train", "loss": 4 / (1 + step / 400) + 1.0,
                       "lr": 1.0, "tokens": step * 4096, "tokens_per_s": 20480.0, "step_time_ms": 50.0})


# Textual's floor: the runs screen's header, table columns and keys, nothing of ours
FLOOR_APP = """
from textual.app import App
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header

KEYS = [("o", "Open"), ("n", "New run"), ("s", "Stop"), ("r", "Resume"), ("d", "Delete"), ("l", "Log"),
        ("space", "Mark"), ("c", "Compare marked"), ("question_mark", "Help"), ("ctrl+t", "Dark/light")]


class Floor(App):
    TITLE = "nanogpt-tui"
    BINDINGS = [Binding(key, f"noop('{key}')", label) for key, label in KEYS]

    def compose(self):
        yield Header()
        yield DataTable()
        yield Footer()

    def on_mount(self):
        self.query_one(DataTable).add_columns("", "Name", "Kind", "Preset", "State", "Step", "Loss", "Val",
                                              "Tok/s", "Started", "Duration", "Curve")
        self.call_after_refresh(self.exit)

    def action_noop(self, key):
        pass


Floor().run()
"""


def first_frame_seconds(home: Path, repeats: int) -> tuple[float, float, float]:
    """Medians of the wall time and the app's CPU time from its start until its first frame reached the
    terminal, and the wall time of Textual's floor app, measured in turn with ours.

    On a busy machine the wall time waits for other processes; the CPU time is what the app itself spent.
    """
    times, cpu_times, floor_times = [], [], []
    floor_script = home / "floor_app.py"
    floor_script.write_text(FLOOR_APP)
    for _ in range(repeats):
        for argv, into in ((None, times), ([sys.executable, str(floor_script)], floor_times)):
            app = AppInPty(home, {"NANOGPT_TUI_EXIT_AFTER_FIRST_FRAME": "1"}, argv)
            exit_code = app.process.wait(timeout=60)
            app.close()
            if exit_code != 0 or app.first_frame_at is None or app.first_frame_cpu is None:
                raise SystemExit(f"the app failed to start:\n{app.output.decode(errors='replace')}")
            into.append(app.first_frame_at - app.started)
            if argv is None:
                cpu_times.append(app.first_frame_cpu)
    return statistics.median(times), statistics.median(cpu_times), statistics.median(floor_times)


def idle_cpu(home: Path, warmup: float, seconds: float) -> float:
    app = AppInPty(home)
    try:
        time.sleep(warmup)
        return app.cpu_percent(seconds)
    finally:
        app.close()


def follow_cpu(home: Path, run_dir: Path, warmup: float, seconds: float) -> float:
    """CPU of the app while its dashboard follows a run that writes LINES_PER_S metric lines a second."""
    stop = threading.Event()

    def write_lines() -> None:
        step = int(json.loads((run_dir / "status.json").read_text())["step"])
        with open(run_dir / "metrics.jsonl", "a") as metrics, open(run_dir / "train.log", "a") as log:
            while not stop.wait(1 / LINES_PER_S):
                step += 1
                metrics.write(metric_line(step) + "\n")
                metrics.flush()
                log.write(f"step {step}\n")
                log.flush()

    writer = threading.Thread(target=write_lines, daemon=True)
    writer.start()
    app = AppInPty(home)
    try:
        time.sleep(warmup)
        app.send(b"\r")  # the followed run is the newest, so the first row: open its dashboard
        time.sleep(warmup)
        return app.cpu_percent(seconds)
    finally:
        app.close()
        stop.set()
        writer.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases (a smoke test, not a measurement)")
    args = parser.parse_args()
    repeats, warmup, window = (3, 2.0, 5.0) if args.quick else (5, 3.0, 30.0)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        runs = home / "data" / "runs"
        now = time.time()
        for index in range(5):
            write_run(runs, f"finished-{index}", "finished", None, 2000, now - 3600 * (index + 2))
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        first_frame, first_frame_cpu, floor = first_frame_seconds(home, repeats)
        print(f"first frame: {first_frame:.3f} s wall, {first_frame_cpu:.3f} s CPU of the app "
              f"(medians of {repeats}, from process start, interpreter included); "
              f"a bare Textual app with the same header, columns and keys: {floor:.3f} s")
        idle = idle_cpu(home, warmup, window)
        print(f"idle CPU with the runs screen open: {idle:.2f} % of one core over {window:.0f} s")
        live = write_run(runs, "live", "running", os.getpid(), 1000, now)
        follow = follow_cpu(home, live, warmup, window)
        print(f"CPU while the dashboard follows {LINES_PER_S} lines/s: {follow:.2f} % of one core over {window:.0f} s")
    print(f"first_frame_s={first_frame:.3f} textual_floor_s={floor:.3f} first_frame_ratio={first_frame / floor:.2f} "
          f"idle_cpu_pct={idle:.2f} follow_cpu_pct={follow:.2f}")


if __name__ == "__main__":
    main()
