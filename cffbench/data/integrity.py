"""md5 verification of raw dataset files, with a stamp file so that reloads skip re-hashing.

A verified file's ``(size, mtime_ns, inode)`` is remembered in ``root/.cache/<name>.stamps.json``
together with its md5. On a later load a file whose stat still matches its stamp is taken to have
the stamped md5; any change (rewrite, truncation, atomic replacement) changes the stat and the file
is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from cffbench.data.registry import DatasetInfo, get_dataset_info
from cffbench.errors import DataError

CACHE_DIR = ".cache"


def file_md5(path: Path) -> str:
    """Hex md5 digest of a file's bytes, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temp file in ``path``'s folder, then rename it over ``path``.

    Readers see either the old or the new file, never a half-written one; two writers racing
    leave one complete file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide shared data from colleagues
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_hint(info: DatasetInfo, root: Path) -> str:
    """The command that repairs ``info``'s files under ``root`` (a plugin dataset's names its
    plugin file, and its own ``decode`` as a suspect)."""
    from cffbench import extensions

    plugin = extensions.DATASETS.origin(info.name)
    option = f" --plugin {plugin.path}" if getattr(plugin, "path", None) else ""
    hint = f"run `cffbench data fetch {info.name}{option} --data-root {root}`"
    return hint + (" or check the dataset's decode()" if info.decode is not None else "")


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _stamps_path(info: DatasetInfo, root: Path) -> Path:
    return Path(root) / CACHE_DIR / f"{info.name}.stamps.json"


def _read_stamps(info: DatasetInfo, root: Path) -> dict:
    try:
        stamps = json.loads(_stamps_path(info, root).read_text())
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def raw_file_md5s(info: DatasetInfo, root: Path, *, trust_stamps: bool = True) -> list[str]:
    """Check the raw files of ``info`` under ``root`` and return their md5s.

    Parameters
    ----------
    info : DatasetInfo
        The dataset.
    root : Path
        The data root.
    trust_stamps : bool
        Take the md5 from the stamp file for files whose ``(size, mtime_ns, inode)`` is
        unchanged since they were last hashed; ``False`` re-hashes every file.

    Returns
    -------
    list of str
        md5 of each file in ``info.raw_files`` order.

    Raises
    ------
    DataError
        A file is missing, or its md5 differs from ``info.raw_md5s`` (corrupt or truncated);
        the message names the file and the fetch command that repairs it.
    """
    root = Path(root)
    stamps = _read_stamps(info, root) if trust_stamps else {}
    new_stamps: dict[str, dict] = {}
    digests: list[str] = []
    expected_md5s = info.raw_md5s or (None,) * len(info.raw_files)
    for path, expected in zip(info.raw_paths(root), expected_md5s):
        if not path.is_file():
            raise DataError(f"{info.name}: raw file {path} is missing; {fetch_hint(info, root)}")
        stamp = _stamp(path)
        old = stamps.get(path.name)
        if old is not None and all(old.get(k) == v for k, v in stamp.items()) and "md5" in old:
            digest = old["md5"]
        else:
            digest = file_md5(path)
        if expected is not None and digest != expected:
            raise DataError(
                f"{info.name}: raw file {path} is corrupt or truncated "
                f"(md5 {digest}, expected {expected}; {stamp['size']} bytes); "
                f"{fetch_hint(info, root)}"
            )
        new_stamps[path.name] = {**stamp, "md5": digest}
        digests.append(digest)
    if new_stamps != {k: stamps.get(k) for k in new_stamps}:
        try:
            atomic_write_bytes(_stamps_path(info, root), json.dumps(new_stamps, indent=1).encode())
        except OSError:
            pass  # a read-only data root still verifies; it only re-hashes next time
    return digests


def verify(name: str, root: Path) -> None:
    """Re-hash every raw file of dataset ``name`` under ``root`` and compare with the registry.

    Raises
    ------
    DataError
        Unknown dataset name, or a raw file missing, truncated or corrupt (message names the
        file and the fix, ``cffbench data fetch NAME``).
    """
    raw_file_md5s(get_dataset_info(name), Path(root), trust_stamps=False)
