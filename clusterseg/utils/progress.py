"""Progress bars for the command-line tools.

One policy for every long tool (data generation, conversion, benchmarks, search):

* bars are drawn on **stderr**, so what a tool prints on stdout (and the CSV / JSON files it
  writes) is the same with or without them;
* on a terminal the bar is mmengine's ``ProgressBar``, redrawn in place; when stderr is a file
  or a pipe (CI logs) a plain ``desc: i/N, elapsed`` line is written at every tenth of the way
  and at the end instead, so logs hold no carriage-return redraws;
* ``--no-progress`` (:func:`add_progress_argument`) turns them off.

Tools print their per-step results through :func:`echo`, which lifts the bar off the terminal
line, prints the message on stdout and draws the bar again below it.

Only the standard library is needed at import time (``tools/misc/make_synthetic_data.py``
loads this file directly on a half-installed environment); mmengine is imported when a bar is
drawn on a terminal, and a plain line is written if it is missing.
"""
import sys
import time

NO_PROGRESS_HELP = ('do not draw progress bars (they go to stderr: a redrawn bar on a terminal, '
                    'a line per tenth of the way otherwise; stdout and the written files are the '
                    'same either way)')

_active = []  # the bars being drawn, innermost last


def add_progress_argument(parser):
    """Add the common ``--no-progress`` flag (``args.no_progress``) to an argparse parser."""
    parser.add_argument('--no-progress', action='store_true', help=NO_PROGRESS_HELP)
    return parser


class _Recorder:
    """File proxy that remembers the last bar mmengine drew, so it can be drawn again."""

    def __init__(self, file):
        self.file, self.last = file, ''

    def write(self, text):
        self.last = text
        self.file.write(text)

    def flush(self):
        self.file.flush()


class Progress:
    """A progress bar over ``total`` steps, on stderr.

    Args:
        total (int): Number of steps.
        desc (str): What is being counted; shown before the bar.
        enabled (bool): Draw anything at all. A disabled bar costs one comparison per update.
        file (file, optional): Where to draw. Defaults to ``sys.stderr`` (looked up when the
            bar starts, so pytest's capture sees it).

    Use as a context manager (or call :meth:`close`)::

        with Progress(len(points), 'benchmark', enabled=not args.no_progress) as bar:
            for p in points:
                echo(run(p))
                bar.update()
    """

    def __init__(self, total, desc='', enabled=True, file=None):
        self.total, self.desc, self.enabled = int(total), desc, bool(enabled) and total > 0
        self.done, self.closed = 0, False
        if not self.enabled:
            return
        self.file = file if file is not None else sys.stderr
        self.tty = bool(getattr(self.file, 'isatty', lambda: False)())
        self.start = time.perf_counter()
        self._bar = None
        self._step = max(1, self.total // 10)  # plain lines: one per tenth of the way
        if self.tty:
            try:
                from mmengine.utils import ProgressBar
            except ImportError:  # the standard-library fallback below still reports progress
                self.tty = False
            else:
                if desc:
                    self.file.write(f'{desc}\n')
                self._rec = _Recorder(self.file)
                self._bar = ProgressBar(self.total, file=self._rec)
        _active.append(self)

    def update(self, n=1):
        """Advance by ``n`` steps."""
        if not self.enabled or self.closed:
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.done == self.total or self.done % self._step == 0:
            elapsed = time.perf_counter() - self.start
            label = f'{self.desc}: ' if self.desc else ''
            self.file.write(f'{label}{self.done}/{self.total}, elapsed {elapsed:.0f}s\n')
            self.file.flush()

    def write(self, msg, file=None):
        """Print ``msg`` on stdout (or ``file``) without breaking the bar."""
        out = file if file is not None else sys.stdout
        if self.enabled and self._bar is not None and not self.closed:
            self.file.write('\r\033[K')  # lift the bar off its line
            self.file.flush()
            print(msg, file=out, flush=True)
            last = self._rec.last
            self.file.write(last if last.startswith('\r') else '\r' + last)
            self.file.flush()
        else:
            print(msg, file=out, flush=True)

    def close(self):
        """End the bar (a terminal bar gets its line break)."""
        if not self.enabled or self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self.file.write('\n')
            self.file.flush()
        if self in _active:
            _active.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def track(iterable, total=None, desc='', enabled=True, file=None):
    """Yield the items of ``iterable`` while drawing a :class:`Progress` over them.

    Args:
        iterable: The items.
        total (int, optional): Their number; ``len(iterable)`` if None (a generator without a
            length is turned into a list first).
        desc, enabled, file: As for :class:`Progress`.
    """
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            iterable = list(iterable)
            total = len(iterable)
    with Progress(total, desc, enabled, file) as bar:
        for item in iterable:
            yield item
            bar.update()


def echo(msg, file=None):
    """``print(msg, flush=True)`` that keeps the innermost active bar intact."""
    if _active:
        _active[-1].write(msg, file)
    else:
        print(msg, file=file if file is not None else sys.stdout, flush=True)
