"""The PyTorch reference for `trainer bench --pytorch PYTHON`: the same GGUF model loaded by
transformers (f32), measured on the same shapes as our rows. `trainer bench` starts this once and
sends one JSON command per line on stdin; each answer is one JSON line on stdout:

  {"op": "step", "pairs": P, "seq": T}      one DPO step as TRL runs it: a no-grad reference
                                            forward and a policy forward/backward over the 2P
                                            sequences (chosen and rejected rows of T tokens, the
                                            first T/2 the prompt), then AdamW
  {"op": "sample", "batch": B, "new": N}    model.generate, temperature 1, exactly N new tokens
  {"op": "quit"}

The first command of each shape runs twice and reports the second (a warm-up), like our rows.
Answers carry the seconds and the peak RSS of this process while the command ran.
"""

import json
import os
import sys
import time


def peak_rss_gib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / (1024 * 1024)
    return 0.0


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main():
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = sys.argv[sys.argv.index("--model") + 1]
    folder, name = os.path.split(os.path.abspath(path))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model.train()
    vocab = model.config.vocab_size
    opt = torch.optim.AdamW(model.parameters(), lr=1e-7, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1)
    warmed = set()

    def logps(logits, ids, prompt):
        # Summed log-probs of the response tokens (positions prompt..T-1).
        lp = torch.log_softmax(logits[:, prompt - 1 : -1, :].float(), dim=-1)
        return lp.gather(2, ids[:, prompt:].unsqueeze(2)).squeeze(2).sum(1)

    def step(pairs, seq):
        low, high = (100, vocab - 100) if vocab > 300 else (0, vocab)
        prompt = torch.randint(low, high, (pairs, seq // 2), generator=gen)
        chosen = torch.randint(low, high, (pairs, seq - seq // 2), generator=gen)
        rejected = torch.randint(low, high, (pairs, seq - seq // 2), generator=gen)
        ids = torch.cat([torch.cat([prompt, chosen], 1), torch.cat([prompt, rejected], 1)], 0)
        p = seq // 2
        with torch.no_grad():
            ref = logps(model(input_ids=ids).logits, ids, p)
        pol = logps(model(input_ids=ids).logits, ids, p)
        margin = (pol[:pairs] - ref[:pairs]) - (pol[pairs:] - ref[pairs:])
        loss = -F.logsigmoid(0.1 * margin).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sample(batch, new):
        # The same prompt text as our rows (src/commands/bench/measure.rs, story_prompt).
        texts = [
            f"<|im_start|>user\nWrite a long story about the number {i}.<|im_end|>\n<|im_start|>assistant\n"
            for i in range(batch)
        ]
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=new,
                min_new_tokens=new,
                pad_token_id=tok.pad_token_id,
            )
        return (out.shape[1] - enc["input_ids"].shape[1]) * batch

    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            break
        shape = (op, cmd.get("pairs"), cmd.get("seq"), cmd.get("batch"), cmd.get("new"))
        for _ in range(1 if shape in warmed else 2):
            fresh = reset_peak()
            start = time.perf_counter()
            tokens = step(cmd["pairs"], cmd["seq"]) if op == "step" else sample(cmd["batch"], cmd["new"])
            seconds = time.perf_counter() - start
        warmed.add(shape)
        answer = {"seconds": seconds, "peak_rss_gib": peak_rss_gib() if fresh else None}
        if op == "sample":
            answer["new_tokens"] = tokens
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
