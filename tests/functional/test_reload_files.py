"""reload_time_file, reload_file, reload_check_config and config_save_dir through the
daemon (issue 14, part H): a time written to the file reloads the daemon then (and the file
goes), the check's log says what it found, the configuration before and after is saved."""

from __future__ import annotations

import time

import pytest

from tests.functional.here import director_here
from tests.functional.lab import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def test_a_reload_at_the_time_in_reload_time_file(tmp_path):
    at = tmp_path / "reload-at"
    saved = tmp_path / "saved"
    check_log = tmp_path / "check.log"
    config = tmp_path / "keepalived.conf"

    def write(router_id: str) -> None:
        config.write_text(f"""global_defs {{
    router_id {router_id}
    reload_time_file {at}
    reload_file {tmp_path}/reloading
    reload_check_config {check_log}
    config_save_dir {saved}
}}
""")

    write("LB_BEFORE")
    log_path = tmp_path / "log"
    with director_here(config, tmp_path / "state", log_path) as proc:
        wait_for(lambda: "director.started" in log_path.read_text(), 20,
                 message=lambda: log_path.read_text())
        write("LB_AFTER")
        when = time.time() + 4
        at.write_text(time.strftime("%H:%M:%SZ", time.gmtime(when)) + "\n")
        wait_for(lambda: "reload.applied" in log_path.read_text(), 15,
                 message=lambda: log_path.read_text())
        assert time.time() >= when - 0.01               # not before the time
        text = log_path.read_text()
        assert "reload.scheduled" in text and "reload.timed" in text
        assert not at.exists()                          # done: removed (no reload_repeat)
        assert not (tmp_path / "reloading").exists()    # removed once the files were read
        assert check_log.read_text().splitlines()[-1] == "configuration valid: reloading"
        before = sorted(saved.glob("*-before.conf"))
        after = sorted(saved.glob("*-after.conf"))
        assert len(before) == len(after) == 1
        assert "LB_BEFORE" in before[0].read_text() and "LB_AFTER" in after[0].read_text()
