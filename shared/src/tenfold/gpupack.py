"""`make gpu-pack DEST=dir`: one folder with everything the GPU benchmark needs, small enough to travel.

    python -m tenfold.gpupack --dest DIR [--small] [--data-root D] [--models-root M]

The GPU node has no network and at most 64 MiB may be brought along (working tree + pack), so the pack holds
    data/cifar10/test.npz          the full test set, the JPEG bytes copied unchanged (teacher accuracies hold)
    data/cifar10/train.npz         a class-balanced subset (first N per class), JPEG bytes copied unchanged
    data/mnist/{train,test}.npz    class-balanced subsets
    data/<graph>/events.csv.xz     the temporal graphs, xz-compressed (10-15x; gpubench.materialize expands them)
    models/<teacher>.{pt,json}     every teacher stored as float16 (load_teacher loads it back into float32);
                                   the JSON gains stored_dtype and pack_test_top1, re-measured on data/cifar10
    pylib/yaml/                    pure-Python PyYAML, a fallback at the END of PYTHONPATH for nodes without it
    MANIFEST.json                  what was packed, sizes, the teacher checks
and refuses to finish over --limit-mib (56 by default). `--small` writes the same layout with 10 test and 100 training
images per class and 2000 events per graph (the CI smoke test of this step, and the smoke runs' data); its teacher
check compares float16 with the float32 original on those test images instead of the JSON's full-test-set value.
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, TenfoldError

__all__ = ["build_pack", "subset_jpeg_pack", "half_state_dict", "teacher_top1", "tree_bytes"]

GRAPHS = ("bitcoinalpha", "bitcoinotc", "enron", "fb_forum", "ia_contact", "ia_enron_employees", "ia_hypertext",
          "sfhh", "uci")
MIB = 2**20


def _balanced(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """Indices of the first `per_class` items of every class, in data-set order (all when None)."""
    if per_class is None:
        return np.arange(len(labels))
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    return np.sort(keep)


def subset_jpeg_pack(src: Path, dst: Path, per_class: int | None) -> int:
    """Copy a tenfold CIFAR JPEG pack keeping `per_class` images per class; the JPEG bytes are copied, not
    re-encoded, so the images decode to exactly the same pixels. Returns the number of images."""
    z = np.load(src, allow_pickle=False)
    labels, offsets, blob = z["labels"], z["offsets"], z["jpeg"]
    idx = _balanced(labels, per_class)
    parts = [blob[offsets[i]:offsets[i + 1]] for i in idx]
    new_offsets = np.zeros(len(idx) + 1, dtype=np.int64)
    new_offsets[1:] = np.cumsum([len(p) for p in parts])
    dst.parent.mkdir(parents=True, exist_ok=True)
    extra = {"classes": z["classes"]} if "classes" in z.files else {}
    with open(dst, "wb") as f:  # np.savez on a path would append .npz to names without it
        np.savez(f, jpeg=np.concatenate(parts) if parts else blob[:0], offsets=new_offsets, labels=labels[idx],
                 **extra)
    return len(idx)


def _subset_array_pack(src: Path, dst: Path, per_class: int | None) -> int:
    z = np.load(src, allow_pickle=False)
    idx = _balanced(z["labels"], per_class)
    out = {k: (z[k][idx] if k in ("images", "labels") else z[k]) for k in z.files}
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as f:
        np.savez_compressed(f, **out)
    return len(idx)


def half_state_dict(sd: dict) -> dict:
    """Floating tensors as float16 (integer buffers such as BN's num_batches_tracked unchanged)."""
    return {k: (v.half() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in sd.items()}


def teacher_top1(model: torch.nn.Module, data_root: Path, num_classes: int, limit: int | None = None) -> tuple:
    """(top-1, n) of a CIFAR-10 teacher on data_root/cifar10/test.npz, inputs normalised as the teachers were
    trained (the animals-6 teacher on classes 2-7 relabelled 0-5)."""
    from . import data
    from .data import transforms

    ds = data.cifar10(data_root, train=False)
    if num_classes == 6:
        ds = data.class_subset(ds, [2, 3, 4, 5, 6, 7])
    x, y = ds.tensors()
    if limit is not None:
        x, y = x[:limit], y[:limit]
    mean = torch.tensor(transforms.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(transforms.CIFAR10_STD).view(1, 3, 1, 1)
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(x), 250):
            correct += (model((x[i:i + 250] - mean) / std).argmax(1) == y[i:i + 250]).sum().item()
    return correct / max(len(x), 1), len(x)


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _pack_teachers(models_root: Path, dest: Path, data_dest: Path, small: bool, check: bool, log) -> list[dict]:
    from .nets import load_teacher

    out = []
    for pt in sorted(models_root.glob("*.pt")):
        meta_path = pt.with_suffix(".json")
        if not meta_path.is_file():
            log(f"  teacher {pt.name}: no JSON beside it, left out")
            continue
        meta = json.loads(meta_path.read_text())
        sd = torch.load(pt, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
            sd = sd["state_dict"]
        torch.save(half_state_dict(sd), dest / pt.name)
        rec = {"name": pt.stem, "bytes": (dest / pt.name).stat().st_size, "json_test_top1": meta.get("test_top1")}
        if check:
            t0 = time.perf_counter()
            packed = load_teacher(dest / pt.name, meta["arch"], int(meta["num_classes"]))
            assert all(p.dtype == torch.float32 for p in packed.parameters())
            limit = 200 if small else None
            acc, n = teacher_top1(packed, data_dest, int(meta["num_classes"]), limit)
            rec.update(pack_test_top1=acc, test_images=n)
            if small:  # too few images to compare with the JSON: compare with the float32 original instead
                ref, _ = teacher_top1(load_teacher(pt), data_dest, int(meta["num_classes"]), limit)
                rec["float32_test_top1"] = ref
                ok, against = abs(acc - ref) <= 1.0 / max(n, 1) + 1e-9, ref
            else:
                against = meta.get("test_top1")
                ok = against is not None and abs(acc - against) <= 0.001 + 1e-9
            rec["check_seconds"] = round(time.perf_counter() - t0, 1)
            log(f"  teacher {pt.stem}: float16 top-1 {acc:.4f} on {n} test images (against {against}) "
                f"{'ok' if ok else 'FAILED'}")
            if not ok:
                raise DataError(f"teacher {pt.stem}: float16 copy scores {acc:.4f}, expected {against} within "
                                f"{'one image' if small else '0.1 pt'}")
            meta["pack_test_top1"] = acc
        meta["stored_dtype"] = "float16"
        (dest / meta_path.name).write_text(json.dumps(meta, indent=1))
        out.append(rec)
    return out


def _pack_pylib(dest: Path) -> list[str]:
    """Pure-Python PyYAML (the spine's only dependency that a PyTorch install may lack)."""
    try:
        import yaml
    except ImportError:
        return []
    src = Path(yaml.__file__).parent
    (dest / "yaml").mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.py"):
        shutil.copy2(f, dest / "yaml" / f.name)
    return ["yaml"]


def build_pack(dest: Path, data_root: Path, models_root: Path, *, small: bool = False, train_per_class: int = 500,
               mnist_per_class: int = 500, graphs=GRAPHS, check: bool = True, limit_mib: float = 56.0,
               log=print) -> dict:
    """Write the pack (see the module docstring); returns the manifest. Missing inputs are left out with a line
    in the manifest; the size limit is a hard error."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        if not (dest / "MANIFEST.json").is_file():
            raise DataError(f"{dest} exists and is not a pack: choose an empty or new folder")
        shutil.rmtree(dest)
    data_dest, models_dest = dest / "data", dest / "models"
    models_dest.mkdir(parents=True)
    data_dest.mkdir(parents=True)
    few = 10 if small else None
    man: dict = {"created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "small": small, "data": {},
                 "missing": [], "torch": torch.__version__}
    c10 = data_root / "cifar10"
    for split, per in (("test", few), ("train", 100 if small else train_per_class)):
        if (c10 / f"{split}.npz").is_file():
            man["data"][f"cifar10/{split}"] = subset_jpeg_pack(c10 / f"{split}.npz", data_dest / "cifar10" /
                                                               f"{split}.npz", per)
        else:
            man["missing"].append(f"cifar10/{split}.npz")
    for split, per in (("test", few), ("train", 100 if small else mnist_per_class)):
        src = data_root / "mnist" / f"{split}.npz"
        if src.is_file():
            man["data"][f"mnist/{split}"] = _subset_array_pack(src, data_dest / "mnist" / f"{split}.npz", per)
        else:
            man["missing"].append(f"mnist/{split}.npz")
    for g in graphs:
        src = data_root / g / "events.csv"
        if not src.is_file():
            man["missing"].append(f"{g}/events.csv")
            continue
        text = src.read_bytes()
        if small:  # header + the first 2000 events
            text = b"".join(text.splitlines(keepends=True)[:2001])
        (data_dest / g).mkdir()
        (data_dest / g / "events.csv.xz").write_bytes(lzma.compress(text, preset=9))
        if (data_root / g / "SOURCE.md").is_file():
            shutil.copy2(data_root / g / "SOURCE.md", data_dest / g / "SOURCE.md")
        man["data"][g] = text.count(b"\n") - 1
    if models_root.is_dir():
        man["teachers"] = _pack_teachers(models_root, models_dest, data_dest, small,
                                         check and (data_dest / "cifar10" / "test.npz").is_file(), log)
    else:
        man["missing"].append(f"teachers ({models_root})")
    man["pylib"] = _pack_pylib(dest / "pylib")
    total = tree_bytes(dest)
    man["bytes"] = total
    man["mib"] = round(total / MIB, 2)
    (dest / "MANIFEST.json").write_text(json.dumps(man, indent=1))
    if total > limit_mib * MIB:
        raise DataError(f"pack {dest} is {total / MIB:.1f} MiB, over the {limit_mib:g} MiB limit: lower "
                        f"--train-per-class / --mnist-per-class or pack fewer graphs")
    return man


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tenfold.gpupack", description=__doc__.split("\n")[0])
    ap.add_argument("--dest", required=True, help="the pack folder (created; an older pack there is replaced)")
    ap.add_argument("--data-root", default=os.environ.get("TENFOLD_DATA"), help="default $TENFOLD_DATA")
    ap.add_argument("--models-root", default=os.environ.get("TENFOLD_MODELS"), help="default $TENFOLD_MODELS")
    ap.add_argument("--small", action="store_true", help="a few images per class (the CI check of this step)")
    ap.add_argument("--train-per-class", type=int, default=500, help="CIFAR-10 training images per class")
    ap.add_argument("--mnist-per-class", type=int, default=500, help="MNIST training images per class")
    ap.add_argument("--no-check", action="store_true", help="skip re-measuring the float16 teachers")
    ap.add_argument("--limit-mib", type=float, default=56.0)
    a = ap.parse_args(argv)
    if not a.data_root:
        print("gpu-pack: no data (set TENFOLD_DATA or pass --data-root); nothing packed")
        return 0 if a.small else 2
    try:
        models = Path(a.models_root) if a.models_root else Path(a.data_root).parent / "models"
        with torch.inference_mode():
            man = build_pack(Path(a.dest), Path(a.data_root), models, small=a.small,
                             train_per_class=a.train_per_class, mnist_per_class=a.mnist_per_class,
                             check=not a.no_check, limit_mib=a.limit_mib)
    except TenfoldError as e:
        print(f"gpu-pack: error: {e}", file=sys.stderr)
        return 2
    print(f"gpu-pack: {a.dest}: {man['mib']} MiB; data {man['data']}; missing {man['missing'] or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
