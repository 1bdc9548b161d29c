"""A small byte-level BPE tokenizer in GPT-2's style: its trainer, its encoder, and its
tokenizer.json in the format of Hugging Face `tokenizers` (what `transformers`'
PreTrainedTokenizerFast and the npm package @huggingface/tokenizers load).

As GPT-2 (Radford et al. 2019, section 2.2; openai/gpt-2 src/encoder.py):
- text is split into pre-tokens by GPT-2's regex, and each pre-token's UTF-8 bytes are mapped
  to printable characters by bytes_to_unicode (a space becomes "Ġ", a newline "Ċ");
- BPE merges are learned inside pre-tokens only, most frequent pair first;
- the vocabulary is the 256 byte characters (ids 0-255, in bytes_to_unicode's order, as GPT-2's
  encoder.json), then one token per merge, then <|endoftext|>.
No special token is added when encoding (GPT-2's tokenizer adds none).
"""
import re
from collections import Counter

EOS = "<|endoftext|>"

# GPT-2's pattern is 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# Python's `re` has no \p{..}: letters are [^\W\d_], numbers \d, and "neither" is [^\s\w] or _.
# On ASCII text (both corpora of this example) the two patterns split identically.
PATTERN = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    """openai/gpt-2 src/encoder.py: a reversible map of the 256 bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_CHARS = bytes_to_unicode()


def pretokenize(text):
    """Pre-tokens of `text`, each as its byte characters (a space is "Ġ")."""
    return ["".join(BYTE_CHARS[b] for b in piece.encode("utf-8")) for piece in PATTERN.findall(text)]


def train(text, merges):
    """Learns `merges` merges on `text`: each round merges the most frequent adjacent pair over all
    pre-tokens (ties: the pair seen first in sorted order). Returns the merges as (a, b) pairs."""
    words = Counter(tuple(w) for w in pretokenize(text))
    learned = []
    for _ in range(merges):
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        learned.append(best)
        merged = Counter()
        for word, count in words.items():
            merged[merge_pair(word, best)] += count
        words = merged
    return learned


def merge_pair(word, pair):
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


class Tokenizer:
    """The trained tokenizer: vocab (token -> id), merges, encode, decode."""

    def __init__(self, merges):
        self.merges = list(merges)
        self.ranks = {pair: i for i, pair in enumerate(self.merges)}
        self.vocab = {}
        for token in list(BYTE_CHARS.values()) + [a + b for a, b in self.merges] + [EOS]:
            self.vocab.setdefault(token, len(self.vocab))  # two merges may make the same token
        self.eos_id = self.vocab[EOS]
        self.byte_of = {c: b for b, c in BYTE_CHARS.items()}

    def __len__(self):
        return len(self.vocab)

    def bpe(self, word):
        """BPE of one pre-token: apply the lowest-ranked merge present until none applies."""
        word = tuple(word)
        while len(word) > 1:
            pair = min(zip(word, word[1:]), key=lambda p: self.ranks.get(p, len(self.ranks)))
            if pair not in self.ranks:
                break
            word = merge_pair(word, pair)
        return word

    def encode_pieces(self, text):
        """[(pre-token text, its ids)] for `text`."""
        return [(p, [self.vocab[t] for t in self.bpe(w)]) for p, w in zip(PATTERN.findall(text), pretokenize(text))]

    def encode(self, text):
        return [i for _, ids in self.encode_pieces(text) for i in ids]

    def decode(self, ids):
        tokens = {i: t for t, i in self.vocab.items()}
        chars = "".join(tokens[i] for i in ids)
        return bytes(self.byte_of[c] for c in chars if c in self.byte_of).decode("utf-8", errors="replace")

    def to_json(self):
        """tokenizer.json (tokenizers' serialisation, as GPT-2's on the Hub)."""
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [{"id": self.eos_id, "content": EOS, "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": True, "special": True}],
            "normalizer": None,
            "pre_tokenizer": byte_level,
            "post_processor": {**byte_level, "trim_offsets": False},
            "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                      "vocab": self.vocab, "merges": ["%s %s" % pair for pair in self.merges]},
        }
