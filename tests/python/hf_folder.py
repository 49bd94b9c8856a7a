"""Loads a saved model folder with transformers' tokenizer (no torch needed) and prints, as one
JSON line, what its chat template renders for one user question and the ids of that text.

usage: python hf_folder.py FOLDER QUESTION
"""
import json
import sys

from transformers import AutoTokenizer, GenerationConfig

folder, question = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(folder)
text = tokenizer.apply_chat_template(
    [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
)
generation = GenerationConfig.from_pretrained(folder)
print(
    json.dumps(
        {
            "text": text,
            "input_ids": tokenizer(text, add_special_tokens=False)["input_ids"],
            "eos_token": tokenizer.eos_token,
            "eos_token_id": generation.eos_token_id,
        }
    )
)
