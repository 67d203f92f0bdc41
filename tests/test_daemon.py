"""`flowprobe run` without a network: what it does with its config."""

import subprocess
import sys


def run(config_path):
    return subprocess.run([sys.executable, "-m", "flowprobe", "run", "--config", str(config_path),
                           "--no-ubus"], capture_output=True, text=True, timeout=30)


def test_bad_config_at_start_exits_non_zero(tmp_path):
    config = tmp_path / "bad.conf"
    config.write_text("config flowprobe 'main'\n\toption enabled '1'\n\toption max_flows 'lots'\n")
    result = run(config)
    assert result.returncode == 2
    assert "flowprobe.main.max_flows" in result.stderr and "lots" in result.stderr


def test_disabled_config_does_nothing(tmp_path):
    config = tmp_path / "off.conf"
    config.write_text("config flowprobe 'main'\n\toption enabled '0'\n")
    result = run(config)
    assert result.returncode == 0 and "disabled" in result.stderr


def test_missing_config_is_a_clear_error(tmp_path):
    result = run(tmp_path / "nowhere.conf")
    assert result.returncode == 2 and "nowhere.conf" in result.stderr


def spool_config(path, spool_dir, user):
    path.write_text("config flowprobe 'main'\n\toption enabled '1'\n\tlist interface 'lo'\n"
                    f"\toption spool_dir '{spool_dir}'\n\toption user '{user}'\n"
                    "config collector 'c'\n\toption host '127.0.0.1'\n\toption port '9'\n"
                    "\toption spool_kb '64'\n")
    return path


def test_the_spool_directory_is_made_for_the_user_and_nothing_else_is_touched(tmp_path):
    """An existing spool_dir (it could be /etc) is neither handed to the
    user nor emptied of files that are not this daemon's spools."""
    import os

    import pytest

    from flowprobe.daemon import Probe
    if os.geteuid() != 0:
        pytest.skip("making a directory for another user needs root")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.spool").write_text("someone else's")
    (existing / "c.123.4.spool").write_text("an earlier run's")
    probe = Probe(str(spool_config(tmp_path / "a.conf", existing, "nobody")), ubus=False)
    probe.exporter.close()
    assert existing.stat().st_uid == 0
    # the earlier run's spool is gone, this run's closed with its exporter
    assert sorted(p.name for p in existing.iterdir()) == ["notes.spool"]
    fresh = tmp_path / "fresh"
    probe = Probe(str(spool_config(tmp_path / "b.conf", fresh, "nobody")), ubus=False)
    probe.exporter.close()
    nobody = __import__("pwd").getpwnam("nobody")
    assert (fresh.stat().st_uid, fresh.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
