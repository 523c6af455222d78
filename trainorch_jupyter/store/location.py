"""Where the run store's database can safely live.

SQLite's WAL mode needs shared memory between the processes that open the
database, which network filesystems (NFS, CIFS, Lustre, sshfs...) do not give:
on a JupyterHub whose home directories are on NFS, a WAL database there can be
corrupted.  So the database goes to a node-local directory when
``TRAINORCH_HOME`` is on a network filesystem (logs stay under
``TRAINORCH_HOME``), and we say so once.  ``TRAINORCH_DB`` overrides the choice.
"""

from __future__ import annotations

import getpass
import os
import tempfile

from . import paths

NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "glusterfs",
     "fuse.sshfs", "fuse.glusterfs", "ceph", "fuse.ceph", "9p", "afs", "ncpfs"}
)


def filesystem_type(path: str, mounts_file: str = "/proc/mounts") -> str:
    """The type of the filesystem holding ``path`` (longest mount-point match), or ''."""
    path = os.path.realpath(path)
    best, fstype = "", ""
    try:
        with open(mounts_file) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, fstype = mount, parts[2]
    except OSError:
        return ""
    return fstype


def is_network_fs(path: str, mounts_file: str = "/proc/mounts") -> bool:
    return filesystem_type(path, mounts_file) in NETWORK_FS


def node_local_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    path = os.path.join(base, f"trainorch-{user}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def database_path(mounts_file: str = "/proc/mounts") -> tuple[str, str | None]:
    """(path of the database, a message to show once, or None)."""
    explicit = os.environ.get("TRAINORCH_DB")
    if explicit:
        os.makedirs(os.path.dirname(os.path.abspath(explicit)), exist_ok=True)
        return explicit, None
    home = paths.home()
    if is_network_fs(home, mounts_file):
        local = os.path.join(node_local_dir(), "runs.sqlite")
        return local, (
            f"trainorch: {home} is on a network filesystem ({filesystem_type(home, mounts_file)}), "
            f"where SQLite's WAL is unsafe; the run database is kept at {local} on this node "
            "(logs stay in TRAINORCH_HOME). Set TRAINORCH_DB to choose another node-local path."
        )
    return os.path.join(home, "runs.sqlite"), None
