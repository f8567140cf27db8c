"""File helpers shared by saving and downloading."""
from __future__ import annotations

import os
import stat


def new_file_mode(path: str) -> int:
    """Mode for a file about to replace `path`: the existing file's, else 0o666 less the umask.

    Files are written to a temporary name first (tempfile.mkstemp makes them 0o600) and
    renamed over `path`; this is the mode they should end up with, as open() would give.
    """
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
        os.umask(mask)
        return 0o666 & ~mask
