"""luci-app-flowprobe without a browser: its JSON parses, its menu points to
views that exist, its JavaScript parses (node --check), its ACL grants exactly
the ubus methods and UCI configs the views use, and po/templates is current.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "luci-app-flowprobe"
RESOURCES = APP / "htdocs" / "luci-static" / "resources"
MENU = APP / "root" / "usr" / "share" / "luci" / "menu.d" / "luci-app-flowprobe.json"
ACL = APP / "root" / "usr" / "share" / "rpcd" / "acl.d" / "luci-app-flowprobe.json"
STANDIN = ROOT / "tests" / "luci" / "luci_standin"
DECLARE = re.compile(r"rpc\.declare\(\{\s*object:\s*'([^']+)',\s*method:\s*'([^']+)'")
UCI_CONFIG = re.compile(r"\buci\.(?:load|get|get_first|set|unset|sections|add|remove)"
                        r"\(\s*'([^']+)'")
MAP_CONFIG = re.compile(r"new form\.Map\(\s*'([^']+)'")


def app_scripts():
    return sorted(RESOURCES.rglob("*.js"))


def used_by_views():
    """(object, method) pairs declared and UCI configs touched, from the sources."""
    methods, configs = set(), set()
    for path in app_scripts():
        text = path.read_text()
        methods |= set(DECLARE.findall(text))
        configs |= set(UCI_CONFIG.findall(text)) | set(MAP_CONFIG.findall(text))
    return methods, configs


def test_every_json_file_parses():
    files = sorted(APP.rglob("*.json"))
    assert MENU in files and ACL in files
    for path in files:
        json.loads(path.read_text())


def test_every_menu_entry_points_to_an_existing_view():
    menu = json.loads(MENU.read_text())
    views = [entry["action"]["path"] for entry in menu.values()
             if entry["action"]["type"] == "view"]
    assert views
    for view in views:
        assert (RESOURCES / "view" / f"{view}.js").is_file(), view
    for path, entry in menu.items():
        assert path.startswith("admin/services/flowprobe"), path
        if entry["action"]["type"] == "firstchild":
            assert any(other.startswith(path + "/") for other in menu), path
            assert entry["depends"]["acl"] == ["luci-app-flowprobe"]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node (Debian package nodejs)")
def test_the_scripts_parse():
    for path in app_scripts() + sorted(STANDIN.rglob("*.js")):
        result = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}: {result.stderr}"


def test_views_are_written_as_luci_views():
    for path in sorted((RESOURCES / "view").rglob("*.js")):
        text = path.read_text()
        assert text.startswith("'use strict';\n'require view';"), path
        assert "return view.extend({" in text, path


def test_the_acl_grants_what_the_views_use_and_nothing_else():
    methods, configs = used_by_views()
    acl = json.loads(ACL.read_text())
    assert list(acl) == ["luci-app-flowprobe"]
    group = acl["luci-app-flowprobe"]
    assert set(group) == {"description", "read", "write"}
    granted = {(obj, method) for access in ("read", "write")
               for obj, names in group[access].get("ubus", {}).items() for method in names}
    assert granted == methods
    # reading shows, writing changes: status, flows and query read, expire and reload write
    # luci.flowprobe: the daemon's methods as uhttpd can call them (they accept the
    # ubus_rpc_session it adds; `flowprobe` itself refuses it, see control/ubus.py)
    assert group["read"]["ubus"] == {"luci.flowprobe": ["status", "flows", "query"]}
    assert group["write"]["ubus"] == {"luci.flowprobe": ["expire", "reload"]}
    assert set(group["read"]["uci"]) == set(group["write"]["uci"]) == configs == {"flowprobe"}
    for access in ("read", "write"):
        assert set(group[access]) == {"ubus", "uci"}, f"{access}: nothing but ubus and uci"


def test_the_acl_check_can_fail():
    """The scan finds a declared method the ACL lacks (the check is not vacuous)."""
    text = "var x = rpc.declare({ object: 'luci.flowprobe', method: 'secret' });"
    assert DECLARE.findall(text) == [("luci.flowprobe", "secret")]


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="needs xgettext (Debian gettext)")
def test_the_translation_template_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "luci" / "make_pot.py"),
                             "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
