"""Writes the small parquet files the tests read (tests/fixtures/*.parquet), as a Hugging Face
dataset publishes them (pyarrow, snappy compression). Run once; the files are committed.

usage: python make_parquet_fixtures.py OUT_FOLDER
"""
import sys

import pyarrow as pa
import pyarrow.parquet as pq

out = sys.argv[1]


def turn(role, content):
    return {"role": role, "content": content}


# TRL's conversational preference format.
conversational = [
    ([turn("user", "What is 2 + 3?")], [turn("assistant", "5")], [turn("assistant", "6")]),
    ([turn("user", "What is 4 + 4?")], [turn("assistant", "8")], [turn("assistant", "7")]),
    ([turn("system", "Be brief."), turn("user", "What is 9 - 1?")], [turn("assistant", "8")], [turn("assistant", "10")]),
]
pq.write_table(
    pa.table(
        {
            "prompt": [c[0] for c in conversational],
            "chosen": [c[1] for c in conversational],
            "rejected": [c[2] for c in conversational],
        }
    ),
    f"{out}/pairs_conversational.parquet",
    compression="snappy",
)
# GSM8K's own layout (question, answer with #### N), as its parquet files have it.
pq.write_table(
    pa.table(
        {
            "question": ["What is 10 + 5?", "What is 7 + 1?", "What is 3 + 3?"],
            "answer": ["10 + 5 = 15\n#### 15", "7 + 1 = 8\n#### 8", "3 + 3 = 6\n#### 6"],
        }
    ),
    f"{out}/gsm8k_3.parquet",
    compression="zstd",
)
