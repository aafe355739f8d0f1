"""clusterseg/utils/progress.py: the tools' progress bars (stderr; terminal vs log; off)."""
import argparse
import io

from clusterseg.utils.progress import Progress, add_progress_argument, echo, track


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_bar_is_redrawn_and_messages_keep_it(capsys):
    term = FakeTerminal()
    with Progress(3, 'points', file=term) as bar:
        bar.update()
        echo('row 1')
        bar.update(2)
    drawn = term.getvalue()
    assert drawn.startswith('points\n') and drawn.endswith('\n')
    assert '\r[' in drawn and '3/3' in drawn  # mmengine's bar, redrawn in place
    # the message went to stdout, the bar was lifted off its line and drawn again after it
    assert capsys.readouterr().out == 'row 1\n'
    before, after = drawn.split('\r\x1b[K', 1)
    assert '1/3' in before and after.startswith('\r[') and '1/3' in after.split('\r[')[1]


def test_log_lines_when_not_a_terminal():
    log = io.StringIO()
    assert list(track(range(25), desc='images', file=log)) == list(range(25))
    lines = log.getvalue().splitlines()
    # one line per tenth of the way (every 2 of 25) and the last one; no carriage returns
    assert lines[0].startswith('images: 2/25') and lines[-1].startswith('images: 25/25')
    assert len(lines) == 13 and '\r' not in log.getvalue()


def test_disabled_draws_nothing(capsys):
    log = io.StringIO()
    assert list(track(iter('abc'), desc='x', enabled=False, file=log)) == ['a', 'b', 'c']
    with Progress(2, enabled=False, file=log) as bar:
        bar.update()
        echo('still printed')
    assert log.getvalue() == '' and capsys.readouterr().out == 'still printed\n'


def test_bar_goes_to_stderr_by_default(capsys):
    list(track([1, 2], desc='d'))
    out = capsys.readouterr()
    assert out.out == '' and 'd: 2/2' in out.err


def test_no_progress_flag():
    parser = add_progress_argument(argparse.ArgumentParser())
    assert parser.parse_args([]).no_progress is False
    assert parser.parse_args(['--no-progress']).no_progress is True
