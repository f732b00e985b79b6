"""A fingerprint of the files a dataset loader reads, for keying decoded-image caches."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path


def listing_digest(folders: Sequence[Path]) -> str:
    """Hash the name, size and modification time of every file directly inside ``folders``.

    A cache keyed by this digest notices an image that was added, removed, replaced or rewritten
    in place (its size or time changes), and an edited index file. Only ``stat`` is read, never
    the bytes: a 200k-file CelebA folder takes well under a second.

    Args:
        folders: folders whose direct children are listed (missing folders count as empty).

    Returns:
        A hex SHA-256 digest; equal listings give equal digests whatever the directory order.
    """
    digest = hashlib.sha256()
    for folder in folders:
        digest.update(f"{folder.resolve()}\0".encode())
        entries = []
        if folder.is_dir():
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.is_file():
                        stat = entry.stat()
                        entries.append(f"{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n")
        digest.update(f"{len(entries)}\n".encode())
        for line in sorted(entries):
            digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
