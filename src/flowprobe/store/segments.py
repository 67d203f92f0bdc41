"""The files under history_dir: time segments of records, the rollups, and
the budget that counts every byte of them.

Records go to one open segment, flows-<seq>.db; it is sealed (closed and
renamed flows-<seq>-<first start ms>-<last start ms>.db) when its hour is
over, when it reaches its share of the budget, or at a clean stop.  The
names are the inventory: a start lists the directory and knows every
sealed segment's time range without opening it.  An open segment left by a
kill -9 is the only file opened at start (SQLite rolls its last
transaction back) and sealed then.  When a write would pass history_kb,
the oldest sealed segment goes, whole: no VACUUM, no rewrite.

Every file is counted as it is on disk, SQLite's -journal, -wal and -shm
included.

The directory is made for the daemon's user (0700), and an existing one is
used only if it is a real directory (not a link) that no one else can
write.  Files are created new (O_CREAT | O_EXCL | O_NOFOLLOW) before
SQLite opens them, and names already taken by something this daemon did not
make are left alone.
"""

import os
import re
import stat

OPEN_SEGMENT = re.compile(r"flows-([0-9]{8})\.db")
SEALED_SEGMENT = re.compile(r"flows-([0-9]{8})-([0-9]{1,16})-([0-9]{1,16})\.db")
ROLLUPS_FILE = "rollups.db"
SIDE_FILES = ("-journal", "-wal", "-shm")


class HistoryError(OSError):
    """A history_dir the store cannot use; the message names it."""


class Segment:
    def __init__(self, seq, path, first_ms=0, last_ms=0, size=0):
        self.seq = seq
        self.path = path
        self.first_ms = first_ms    # start times of the records in it (sealed ones: from the name)
        self.last_ms = last_ms
        self.size = size            # bytes on disk with its side files, as last measured

    @property
    def sealed(self):
        return SEALED_SEGMENT.fullmatch(os.path.basename(self.path)) is not None


def prepare_dir(path, uid=None, gid=None):
    """history_dir made (for uid) if missing; an existing one must be a
    directory, not a link, owned by root or uid and writable by no one
    else. HistoryError says why not."""
    try:
        try:
            os.mkdir(path, 0o700)
            if uid is not None and os.geteuid() == 0:
                os.chown(path, uid, gid, follow_symlinks=False)
        except FileExistsError:
            pass
        info = os.lstat(path)
    except OSError as e:
        raise HistoryError(f"history_dir {path}: {e.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise HistoryError(f"history_dir {path}: not a directory (a link or a file is "
                           "never followed)")
    owners = {0, os.geteuid()} | ({uid} if uid is not None else set())
    if info.st_uid not in owners:
        raise HistoryError(f"history_dir {path}: owned by uid {info.st_uid}, not by root "
                           "or the daemon's user")
    if info.st_mode & 0o022:
        raise HistoryError(f"history_dir {path}: writable by others (mode "
                           f"{stat.S_IMODE(info.st_mode):o}); use a directory only the "
                           "daemon's user can write")
    return path


def file_size(path):
    """Bytes of a file and its SQLite side files (0 for what is not there)."""
    total = 0
    for suffix in ("",) + SIDE_FILES:
        try:
            info = os.lstat(path + suffix)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            total += info.st_blocks * 512 if info.st_blocks else info.st_size
    return total


def inventory(directory):
    """(sealed segments oldest first, open segments left by a crash) by
    their names; no file is opened."""
    sealed, unsealed = [], []
    for entry in os.scandir(directory):
        if not entry.is_file(follow_symlinks=False):
            continue
        match = SEALED_SEGMENT.fullmatch(entry.name)
        if match:
            seq, first, last = map(int, match.groups())
            sealed.append(Segment(seq, entry.path, first, last, file_size(entry.path)))
            continue
        match = OPEN_SEGMENT.fullmatch(entry.name)
        if match:
            unsealed.append(Segment(int(match.group(1)), entry.path, size=file_size(entry.path)))
    return sorted(sealed, key=lambda s: s.seq), sorted(unsealed, key=lambda s: s.seq)


def create_file(path):
    """A new empty file, never through a link and never one that exists."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600))
    except OSError as e:
        raise HistoryError(f"cannot create {path}: {e.strerror}") from None


def check_own_file(path):
    """An existing file of the store: a regular file (not a link) of ours."""
    try:
        info = os.lstat(path)
    except OSError as e:
        raise HistoryError(f"{path}: {e.strerror}") from None
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        raise HistoryError(f"{path}: not a regular file of this user; left alone")


def sqlite_uri(path, mode="rw", immutable=False):
    """A URI that opens an existing file only (mode=rw or ro): SQLite never
    creates the database behind the store's back.  immutable: a sealed
    segment, never written again (SQLite skips locks and journal checks)."""
    return f"file:{_quote(path)}?mode={mode}" + ("&immutable=1" if immutable else "")


# what urllib.parse.quote leaves as it is (RFC 3986 unreserved, and '/'); urllib
# itself is python3-urllib on OpenWrt, with the email package: flash for one call
URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/")


def _quote(path):
    return "".join(chr(b) if b in URI_SAFE else f"%{b:02X}" for b in path.encode())


def open_segment_path(directory, seq):
    return os.path.join(directory, f"flows-{seq:08d}.db")


def sealed_segment_path(directory, seq, first_ms, last_ms):
    return os.path.join(directory, f"flows-{seq:08d}-{first_ms}-{last_ms}.db")


def remove(path):
    """A store file and its side files; a link is removed, never followed."""
    for suffix in ("",) + SIDE_FILES:
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
