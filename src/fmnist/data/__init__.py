"""The data layer: IDX files on disk -> verified numpy arrays. Importing downloads nothing."""
from .dataset import Split, decode_pair, load, normalisation, pixel_stats, stratified_split
from .fetch import cache_dir, download, find_files, locate, search_dirs, verify_file
from .info import describe, get_verified, verification, verify_all
from .idx import encode_idx, parse_idx, read_idx, write_idx
from .sources import DATASETS, DEFAULT_DATASET, ROLES, DataSource, FileSpec, get_source

__all__ = [
    "DATASETS", "DEFAULT_DATASET", "ROLES", "DataSource", "FileSpec", "Split", "cache_dir",
    "decode_pair", "describe", "download", "encode_idx", "find_files", "get_source", "get_verified", "load", "locate",
    "normalisation", "parse_idx", "pixel_stats", "read_idx", "search_dirs",
    "stratified_split", "verification", "verify_all", "verify_file", "write_idx",
]
