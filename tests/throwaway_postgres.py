"""A throwaway PostgreSQL cluster for tests: initdb into a temporary
directory, run as the unprivileged `postgres` account (Debian's postgresql
creates it), reachable only over a Unix socket in that directory (no TCP
port: nothing else on the machine can collide with it or reach it), gone
when the test ends.

    with ThrowawayPostgres() as pg:
        pg.sql("CREATE TABLE t (x int)")
        pg.query("SELECT x FROM t")      # rows as lists of strings
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile

ACCOUNT = "postgres"


def _binaries():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def missing():
    """Why no cluster can be made here, or None."""
    if _binaries() is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    try:
        pwd.getpwnam(ACCOUNT)
    except KeyError:
        return f"no '{ACCOUNT}' account to run PostgreSQL as"
    if os.geteuid() != 0:
        return f"needs root to run PostgreSQL as '{ACCOUNT}'"
    return None


class ThrowawayPostgres:
    def __init__(self, database="flows"):
        self.database = database
        self.bin = _binaries()
        self.account = pwd.getpwnam(ACCOUNT)
        self.directory = tempfile.mkdtemp(prefix="collectors-pg-")
        os.chmod(self.directory, 0o755)   # the socket is reached from other accounts
        self.data = os.path.join(self.directory, "data")
        self.socket_dir = self.directory
        self.started = False

    def _as_account(self, *command, check=True, **options):
        done = subprocess.run(["runuser", "-u", ACCOUNT, "--", *command], capture_output=True,
                              text=True, **options)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}")
        return done

    def start(self):
        os.chown(self.directory, self.account.pw_uid, self.account.pw_gid)
        self._as_account(f"{self.bin}/initdb", "-D", self.data, "--auth=trust", "-U", ACCOUNT,
                         "--encoding=UTF8", "--no-sync")
        options = f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' " \
                  "-c timezone=UTC -c fsync=off"
        self._as_account(f"{self.bin}/pg_ctl", "-D", self.data, "-o", options, "-w", "-t", "30",
                         "-l", os.path.join(self.directory, "log"), "start")
        self.started = True
        self._as_account(f"{self.bin}/createdb", "-h", self.socket_dir, self.database)
        return self

    def sql(self, statements):
        return self._as_account(f"{self.bin}/psql", "-h", self.socket_dir, "-d", self.database,
                                "-v", "ON_ERROR_STOP=1", "-q", "-c", statements)

    def query(self, select):
        """Rows of a SELECT, as lists of strings."""
        done = self._as_account(f"{self.bin}/psql", "-h", self.socket_dir, "-d", self.database,
                                "-v", "ON_ERROR_STOP=1", "-A", "-t", "-F", "\t", "-c", select)
        return [line.split("\t") for line in done.stdout.splitlines() if line]

    def log(self):
        try:
            with open(os.path.join(self.directory, "log")) as file:
                return file.read()
        except OSError:
            return ""

    def stop(self):
        if self.started:
            self._as_account(f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "-w",
                             "stop", check=False)
            self.started = False
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
