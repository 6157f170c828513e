"""Copy index folders without filling their holes.

Qdrant Edge preallocates its files sparsely: a shard holding a few hundred points has 160 MiB of apparent size
(two 32 MiB WAL files, 32 MiB vector, payload and sparse-vector pages) on about 2 MiB of disk. `shutil.copytree`
writes every byte, zeros included, so each copy (a writer's next generation, every reader process's private copy,
a test's copy of the index) took the full apparent size: a test run filled 19 GB. These functions copy only the
extents that hold data (SEEK_DATA / SEEK_HOLE) and set the length, so a copy costs what the original costs.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

_NO_RANGE_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}


def _data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of the regions that hold data; the whole file where the file system cannot tell."""
    extents: list[tuple[int, int]] = []
    offset = 0
    try:
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as error:
                if error.errno == errno.ENXIO:  # only a hole is left
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, end))
            offset = end
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        return [(0, size)]
    return extents


def _copy_range(source: int, target: int, start: int, end: int) -> None:
    position = start
    try:
        while position < end:
            copied = os.copy_file_range(source, target, end - position, position, position)
            if copied == 0:
                return
            position += copied
        return
    except OSError as error:
        if error.errno not in _NO_RANGE_COPY:
            raise
    while position < end:
        block = os.pread(source, min(end - position, 1 << 20), position)
        if not block:
            return
        os.pwrite(target, block, position)
        position += len(block)


def copy_sparse_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> str:
    """Copy one file's data extents and length, then its mode and times (a `copy_function` for copytree)."""
    with open(src, "rb") as source, open(dst, "wb") as target:
        size = os.fstat(source.fileno()).st_size
        for start, end in _data_extents(source.fileno(), size):
            _copy_range(source.fileno(), target.fileno(), start, end)
        os.ftruncate(target.fileno(), size)
    shutil.copystat(src, dst)
    return str(dst)


def copy_index_tree(src: Path, dst: Path) -> Path:
    """`shutil.copytree` for index folders: holes stay holes."""
    return Path(shutil.copytree(src, dst, copy_function=copy_sparse_file))
