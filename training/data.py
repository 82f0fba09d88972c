"""The old home of the datasets, kept so its importers keep working; new code imports from the
modules that now hold each job:

- ``training.samples``: ``Sample``, ``Splits``, ``DataError``, the split files and their helpers;
- ``training.utkface``: UTKFace's names, protocols and splits;
- ``training.celeba``: CelebA's official files;
- ``training.chip_dataset``: ``ChipDataset``, the torch Dataset over a chip cache.

Still imported from here by ``training/evaluate.py`` and ``benchmarks/`` (``standin.py``,
``accuracy.py``, ``peers/calibrate_levi.py``) and tests/training/test_mtfl.py; remove this
module once they import from the modules above.
"""
from __future__ import annotations

from training.celeba import (CELEBA_ATTR_FILE, CELEBA_IMAGE_DIR, CELEBA_LABELS, CELEBA_PARTITION_FILE,
                             celeba_tasks, load_celeba)
from training.chip_dataset import ChipDataset
from training.samples import (SPLIT_SEED, SPLITS_DIR, TRAIN_SHARE, DataError, Sample, Splits,
                              crossing_duplicates, dedup_test, file_hashes, list_images, read_split_csv,
                              split_train_valid, write_split_csv)
from training.utkface import (CORAL_AGE_OFFSET, CORAL_AGES, FULL_AGES, PROTOCOLS, SPLIT_FILES, TEST_SPLITS,
                              UTK_GENDERS, UTK_RACES, UTK_TASKS, BadNameError, ParsedName, load_utkface,
                              load_utkface_part, parse_utkface_name, parse_utkface_name_detail, utk_tasks)

__all__ = ["CELEBA_ATTR_FILE", "CELEBA_IMAGE_DIR", "CELEBA_LABELS", "CELEBA_PARTITION_FILE", "celeba_tasks",
           "load_celeba", "ChipDataset", "SPLIT_SEED", "SPLITS_DIR", "TRAIN_SHARE", "DataError",
           "Sample", "Splits", "crossing_duplicates", "dedup_test", "file_hashes", "list_images",
           "read_split_csv", "split_train_valid", "write_split_csv", "CORAL_AGE_OFFSET",
           "CORAL_AGES", "FULL_AGES", "PROTOCOLS", "SPLIT_FILES", "TEST_SPLITS", "UTK_GENDERS",
           "UTK_RACES", "UTK_TASKS", "BadNameError", "ParsedName", "load_utkface",
           "load_utkface_part", "parse_utkface_name", "parse_utkface_name_detail", "utk_tasks"]
