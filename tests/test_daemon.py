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
