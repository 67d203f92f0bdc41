"""Writes luci-app-flowprobe/po/templates/flowprobe.pot from the _() strings
of the app's JavaScript, with xgettext (Debian package gettext), as LuCI's
i18n-scan does. `--check` only says whether the committed file is current.

    .venv/bin/python tests/luci/make_pot.py [--check]
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent.parent.parent / "luci-app-flowprobe"
POT = APP / "po" / "templates" / "flowprobe.pot"
HEADER = ('msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8"\n')


def sources():
    return sorted((APP / "htdocs").rglob("*.js"))


def extract():
    """The .pot text: LuCI's header, then the messages in source order."""
    xgettext = shutil.which("xgettext")
    if xgettext is None:
        raise RuntimeError("xgettext is missing (Debian package gettext)")
    result = subprocess.run(
        [xgettext, "--language=JavaScript", "--keyword=_", "--keyword=N_:2,3",
         "--from-code=UTF-8", "--no-wrap", "--sort-by-file", "--omit-header",
         "--add-location=file", "-o", "-", *[str(p.relative_to(APP)) for p in sources()]],
        cwd=APP, capture_output=True, text=True, check=True)
    text = HEADER + "\n" + re.sub(r"\n{3,}", "\n\n", result.stdout).lstrip("\n")
    # menu titles are translated too (LuCI's i18n-scan reads menu.d)
    for menu in sorted((APP / "root" / "usr" / "share" / "luci" / "menu.d").glob("*.json")):
        for entry in json.loads(menu.read_text()).values():
            title = entry.get("title")
            if title and f'msgid "{title}"' not in text:
                text += (f"\n#: {menu.relative_to(APP)}\nmsgid \"{title}\"\nmsgstr \"\"\n")
    return text


def main():
    text = extract()
    if "--check" in sys.argv[1:]:
        if not POT.exists() or POT.read_text() != text:
            print(f"{POT} is out of date: run {sys.argv[0]}")
            return 1
        return 0
    POT.parent.mkdir(parents=True, exist_ok=True)
    POT.write_text(text)
    print(f"wrote {POT} ({text.count('msgid ') - 1} messages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
