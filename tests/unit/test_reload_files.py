"""reload_time_file's formats and its watcher (director/reloadfiles.py), on a fake clock."""

from __future__ import annotations

import calendar
import time

import pytest

from director.reloadfiles import DAY, ReloadTimer, reload_time

NOW = calendar.timegm((2026, 12, 1, 10, 0, 0, 0, 0, 0))      # 10:00:00 UTC


@pytest.mark.parametrize("text, expected", [
    ("10:00:05Z", NOW + 5),
    ("09:59:59Z", NOW - 1 + DAY),                    # a time alone already past: tomorrow
    ("2026-12-01 10:01:00Z", NOW + 60),
    ("26-12-01 10:01:00Z", NOW + 60),
    ("2026-12-01 10:01:00Z\nanything after the first line", NOW + 60),
    ("2026-12-01 09:00:00Z", None),                  # a date already past: ignored
    ("2026-02-30 10:00:00Z", None),                  # no such day
    (" 10:00:05Z", None), ("10:00:05Z ", None),      # exactly the format, no spaces
    ("2026-12-01  10:01:00Z", None), ("24:00:00Z", None), ("10:60:00Z", None),
    ("tomorrow", None), ("", None),
])
def test_formats(text, expected):
    assert reload_time(text, NOW) == expected


def test_local_time_without_z():
    expected = time.mktime((2030, 6, 1, 12, 0, 0, 0, 0, -1))
    assert reload_time("2030-06-01 12:00:00", NOW) == expected


class Watch:
    def __init__(self, tmp_path, repeat=False):
        self.path = tmp_path / "reload-at"
        self.now = NOW
        self.reloads = 0
        self.repeat = repeat
        self.timer = ReloadTimer(lambda: (str(self.path), self.repeat), self._reload,
                                 clock=lambda: self.now)

    def _reload(self):
        self.reloads += 1


def test_the_reload_comes_at_the_time_and_the_file_goes(tmp_path):
    watch = Watch(tmp_path)
    watch.timer.tick()                               # no file: nothing
    watch.path.write_text("10:00:03Z\n")
    watch.timer.tick()
    assert watch.timer.due == NOW + 3 and watch.reloads == 0
    watch.now += 3
    watch.timer.tick()
    assert watch.reloads == 1 and not watch.path.exists()
    watch.now += DAY
    watch.timer.tick()
    assert watch.reloads == 1


def test_changed_or_removed_file_moves_or_cancels_it(tmp_path):
    watch = Watch(tmp_path)
    watch.path.write_text("10:00:03Z")
    watch.timer.tick()
    watch.path.write_text("10:00:09Z")               # another size and mtime
    watch.timer.tick()
    assert watch.timer.due == NOW + 9
    watch.path.unlink()
    watch.timer.tick()
    watch.now += 10
    watch.timer.tick()
    assert watch.reloads == 0 and watch.timer.due is None


def test_reload_repeat_keeps_the_file_and_reloads_every_day(tmp_path):
    watch = Watch(tmp_path, repeat=True)
    watch.path.write_text("10:00:03Z")
    watch.timer.tick()                                # read at 10:00:00
    for day in range(3):
        watch.now = NOW + day * DAY + 3
        watch.timer.tick()
        watch.timer.tick()                            # once a day, not once a tick
        assert watch.reloads == day + 1
    assert watch.path.exists()
