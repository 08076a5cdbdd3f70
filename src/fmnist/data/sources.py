"""The registry of data sets: their files, checksums, mirrors and class names.

Adding a data set in the same four-file IDX format (KMNIST, say) is one `DataSource` entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..registry import Registry

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
SPLITS = {"train": ("train_images", "train_labels"), "test": ("test_images", "test_labels")}


@dataclass(frozen=True)
class FileSpec:
    """One file of a data set and the two checksums that we accept for it."""

    filename: str  # as published, ending in .gz
    md5: str  # of the official .gz file, as published
    sha256: str  # of the decompressed content: accepts a re-compressed or gunzipped copy

    @property
    def raw_name(self) -> str:
        return self.filename.removesuffix(".gz")


@dataclass(frozen=True)
class DataSource:
    name: str  # registry key, also the folder name under FMNIST_DATA and the cache
    title: str  # for messages: "Fashion-MNIST"
    files: dict[str, FileSpec]  # role (see ROLES) -> file
    class_names: tuple[str, ...]
    mirrors: tuple[str, ...] = ()  # base URLs, tried in turn; the file name is appended
    folder_aliases: tuple[str, ...] = ()  # other folder names (torchvision's "FashionMNIST")
    mean: float | None = None  # pixel mean / 255 of the training images, None: compute
    std: float | None = None
    homepage: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = set(ROLES) - set(self.files)
        if missing:
            raise ValueError(f"data set {self.name!r} lacks files for {sorted(missing)}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def folder_names(self) -> tuple[str, ...]:
        return (self.name, *self.folder_aliases)


DATASETS: Registry[DataSource] = Registry("data set")
DEFAULT_DATASET = "fashion-mnist"


def get_source(name: str | DataSource) -> DataSource:
    """The registered DataSource of that name (a DataSource passes through)."""
    return name if isinstance(name, DataSource) else DATASETS.get(name)


DATASETS.add("fashion-mnist", DataSource(
    name="fashion-mnist",
    title="Fashion-MNIST",
    files={
        "train_images": FileSpec(
            "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train_labels": FileSpec(
            "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "test_images": FileSpec(
            "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "test_labels": FileSpec(
            "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    ),
    folder_aliases=("FashionMNIST", "fashion_mnist"),
    mean=0.2860, std=0.3530,
    homepage="https://github.com/zalandoresearch/fashion-mnist",
))

DATASETS.add("mnist", DataSource(
    name="mnist",
    title="MNIST",
    files={
        "train_images": FileSpec(
            "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train_labels": FileSpec(
            "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "test_images": FileSpec(
            "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "test_labels": FileSpec(
            "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    class_names=tuple(str(d) for d in range(10)),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    folder_aliases=("MNIST",),
    mean=0.1307, std=0.3081,
    homepage="http://yann.lecun.com/exdb/mnist/",
))
