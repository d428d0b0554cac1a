"""Convert local math data files to verl's RL parquet layout (one file per split / benchmark).

    python examples/verl/prepare_data.py --out data/verl \\
        --train math_train=/path/to/math_train.jsonl \\
        --eval math500=/path/to/math500.jsonl --eval aime24=/path/to/aime24.jsonl ...

Each ``NAME=PATH`` is read with ``apmpo.data.load_examples`` (JSONL / JSON / Parquet /
CSV; the problem and answer columns are detected: problem/question, answer /
final_answer / the last \\boxed{} of a solution) and written to ``OUT/NAME.parquet``
(temporary file, then ``os.replace``) with verl's columns:

- ``data_source``: NAME (verl reports validation reward per data source, i.e. Pass@1
  per benchmark);
- ``prompt``: one chat message, the problem followed by ``--instruction``;
- ``ability``: "math"; ``reward_model``: {"style": "rule", "ground_truth": answer};
- ``extra_info``: {"split", "index"}.

The rewards are scored by ``apmpo.integrations.verl_reward.compute_score``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from apmpo.data import load_examples

DEFAULT_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."


def _named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def verl_rows(name: str, path: Path, split: str, instruction: str, limit: int | None = None) -> list[dict]:
    """The rows of one verl parquet file from a local data file."""
    examples = load_examples(path, columns=[], limit=limit)
    return [
        {
            "data_source": name,
            "prompt": [{"role": "user", "content": f"{example['prompt']}\n{instruction}".strip()}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": example["answer"]},
            "extra_info": {"split": split, "index": index},
        }
        for index, example in enumerate(examples)
    ]


def write_parquet(rows: list[dict], target: Path) -> None:
    """Write ``rows`` to ``target`` atomically (temporary file in the same folder, then os.replace)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder for NAME.parquet files")
    parser.add_argument("--train", type=_named_path, action="append", default=[], help="NAME=PATH (repeatable)")
    parser.add_argument("--eval", type=_named_path, action="append", default=[], help="NAME=PATH (repeatable)")
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION, help="appended to every problem")
    parser.add_argument("--limit", type=int, default=None, help="at most this many examples per file")
    args = parser.parse_args(argv)
    if not args.train and not args.eval:
        parser.error("give at least one --train or --eval NAME=PATH")
    names = [name for name, _ in args.train + args.eval]
    if len(set(names)) != len(names):
        parser.error(f"duplicate NAME in {names}")
    for split, pairs in (("train", args.train), ("test", args.eval)):
        for name, path in pairs:
            rows = verl_rows(name, path, split, args.instruction, args.limit)
            target = args.out / f"{name}.parquet"
            write_parquet(rows, target)
            print(f"{target}: {len(rows)} rows from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
