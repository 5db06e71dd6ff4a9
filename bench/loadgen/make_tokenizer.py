#!/usr/bin/env python3
"""Writes a tiny Hugging Face tokenizer (no download) for the peer load generators: one token per
whitespace-separated word, which is how gpufrac-synth-server counts tokens, so AIPerf's and
guidellm's client-side counts agree with the server's usage.

Usage (with the venv of scripts/setup-python.sh): .venv/bin/python make_tokenizer.py OUT_DIR
"""
import os
import sys

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    out = sys.argv[1]
    corpus = open(os.path.join(HERE, "..", "..", "data", "corpus", "corpus.txt")).read().split()
    vocab = {"[UNK]": 0}
    for word in corpus + [f"w{i}" for i in range(8192)]:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")
    fast.save_pretrained(out)
    print(f"tokenizer with {len(vocab)} words written to {out}")


if __name__ == "__main__":
    main()
