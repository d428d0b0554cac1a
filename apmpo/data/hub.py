"""Hugging Face datasets as data sources: ``hf:OWNER/NAME[@CONFIG]:SPLIT``.

Wherever a data file is accepted, a dataset of the Hugging Face Hub is too, written

    hf:OWNER/NAME[@CONFIG]:SPLIT        e.g. hf:HuggingFaceH4/MATH-500@default:test
                                             hf:openai/gsm8k@main:train
                                             hf:yentinglin/aime_2025:train   (config "default")

and read with ``datasets.load_dataset(OWNER/NAME, CONFIG, split=SPLIT)``; the rows then
go through the same column mapping as a file (:func:`apmpo.data.load_examples`). The
split is required (a plain name: use ``limit`` / ``--limit`` rather than ``train[:100]``);
the config may be left out when the dataset has one. Instead of ``OWNER/NAME`` the
reference may name a local folder, which ``load_dataset`` reads the same way (a folder
of data files, optionally with a dataset card declaring configs), or a folder written by
``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (read with ``load_from_disk``;
for a single ``Dataset`` the split must be the one it was saved as, ``train`` when none
was recorded).

Downloads happen only when the user names a Hub id and the Hub is reachable; the
``datasets`` cache is used as usual, and ``HF_HUB_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1``
make ``datasets`` use the cache only. When the Hub cannot be reached and the dataset is
not cached, :class:`HubUnavailableError` says so and names the shipped copies
(:mod:`apmpo.data.shipped`), which need no network. Every other failure (no such
dataset, config or split) is a ``ValueError`` naming the reference and what exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apmpo.data.shipped import shipped_names

__all__ = ["HUB_PREFIX", "HubDataset", "HubUnavailableError"]

HUB_PREFIX = "hf:"
"""Prefix of a Hugging Face dataset reference."""
_SYNTAX = "hf:OWNER/NAME[@CONFIG]:SPLIT (e.g. hf:HuggingFaceH4/MATH-500@default:test)"
_SPLIT = re.compile(r"[A-Za-z0-9_.+-]+")


class HubUnavailableError(ValueError):
    """The Hub cannot be reached and the dataset is not in the local cache."""


@dataclass(frozen=True)
class HubDataset:
    """A parsed ``hf:`` reference."""

    repo: str
    """``OWNER/NAME`` on the Hub, or a local folder."""
    config: str | None
    """The dataset's configuration ("subset"); None: its only / default one."""
    split: str
    """The split to read."""

    @property
    def text(self) -> str:
        """The reference as written: ``hf:REPO[@CONFIG]:SPLIT``."""
        config = f"@{self.config}" if self.config else ""
        return f"{HUB_PREFIX}{self.repo}{config}:{self.split}"

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str) -> HubDataset:
        """``"hf:REPO[@CONFIG]:SPLIT"`` -> HubDataset; ValueError naming the syntax otherwise."""
        if not isinstance(text, str) or not text.startswith(HUB_PREFIX):
            raise ValueError(f"{text!r}: not a Hugging Face dataset reference; write {_SYNTAX}")
        body = text[len(HUB_PREFIX) :]
        location, sep, split = body.rpartition(":")
        if not sep or not location:
            raise ValueError(f"{text}: no split; write {_SYNTAX}")
        if not _SPLIT.fullmatch(split):
            raise ValueError(
                f"{text}: split {split!r} must be a plain name (letters, digits, _ . + -); "
                f"slices such as train[:100] are not accepted, use --limit / limit= instead; write {_SYNTAX}"
            )
        repo, at, config = location.rpartition("@")
        if not at:
            repo, config = location, ""
        elif not repo or not config:
            raise ValueError(f"{text}: empty {'dataset id' if not repo else 'config'} around '@'; write {_SYNTAX}")
        if not Path(repo).expanduser().is_dir() and not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo):
            raise ValueError(f"{text}: {repo!r} is neither OWNER/NAME nor an existing local folder; write {_SYNTAX}")
        return cls(repo=repo, config=config or None, split=split)

    def load(self) -> Any:
        """The split as a ``datasets.Dataset`` (see the module doc for the errors)."""
        # datasets is imported here, not at the top: importing it costs a second or two,
        # and apmpo.data stays light for everything that reads plain files.
        import datasets

        folder = Path(self.repo).expanduser()
        if folder.is_dir() and ((folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()):
            return self._from_disk(datasets, folder)
        try:
            return datasets.load_dataset(self.repo, self.config, split=self.split)
        except ConnectionError as exc:
            raise HubUnavailableError(
                f"{self.text}: the Hugging Face Hub cannot be reached (no network, or offline mode: "
                f"HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and the dataset is not in the local datasets cache "
                f"({exc}). Use a local copy instead: a shipped dataset (shipped:NAME; shipped: "
                f"{', '.join(shipped_names())}) or a file path"
            ) from None
        except (datasets.exceptions.DatasetsError, ValueError, FileNotFoundError) as exc:
            raise ValueError(f"{self.text}: cannot load this dataset: {exc}") from None

    def _from_disk(self, datasets: Any, folder: Path) -> Any:
        if self.config:
            raise ValueError(
                f"{self.text}: {folder} was written by save_to_disk and has no configs; drop '@{self.config}'"
            )
        loaded = datasets.load_from_disk(str(folder))
        if isinstance(loaded, datasets.DatasetDict):
            if self.split not in loaded:
                raise ValueError(f"{self.text}: no split {self.split!r} in {folder}; splits: {', '.join(loaded)}")
            return loaded[self.split]
        saved = str(loaded.split) if loaded.split is not None else "train"
        if self.split != saved:
            raise ValueError(f"{self.text}: {folder} holds one split, {saved!r}; write {HUB_PREFIX}{self.repo}:{saved}")
        return loaded
