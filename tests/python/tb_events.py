"""Reads a TensorBoard event file with TensorBoard's own reader and prints, as one JSON line,
every scalar tag with its (step, value) list.

usage: python tb_events.py FOLDER
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(
    json.dumps(
        {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    )
)
