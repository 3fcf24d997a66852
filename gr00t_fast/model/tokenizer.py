"""The N1.5 prompt and its Qwen2-style byte-level BPE tokenization, built from the Eagle asset files."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

if TYPE_CHECKING:
    from gr00t_fast.model.config import Gr00tConfig

SYSTEM_PROMPT = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
IMAGE_TOKEN = "<IMG_CONTEXT>"
PAD_TOKEN = "<|endoftext|>"
# Qwen2's pre-tokenization pattern (transformers' Qwen2Converter).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def build_prompt(instruction: str, n_cameras: int, n_image_tokens: int) -> str:
    """The exact string N1.5 tokenizes: chat template, one image block per camera, instruction as `['...']`."""
    images = "".join(f"<image {k}><img>{IMAGE_TOKEN * n_image_tokens}</img>" for k in range(1, n_cameras + 1))
    text = str([str(instruction)])  # str() first: numpy 2 would render np.str_('...')
    return f"{SYSTEM_PROMPT}<|im_start|>user\n{images}{text}<|im_end|>\n<|im_start|>assistant\n"


def qwen2_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Qwen2's split pattern, then the byte-level mapping."""
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def load_qwen2_tokenizer(eagle_dir: str | Path) -> Tokenizer:
    """Qwen2 fast tokenizer from vocab.json + merges.txt + added_tokens.json (no BOS/EOS added)."""
    eagle_dir = Path(eagle_dir)
    vocab = json.loads((eagle_dir / "vocab.json").read_text(encoding="utf-8"))
    added = json.loads((eagle_dir / "added_tokens.json").read_text(encoding="utf-8"))
    lines = (eagle_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    tok = Tokenizer(models.BPE(vocab={**vocab, **added}, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = qwen2_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    # The added tokens are in the BPE vocabulary with their own ids; registering them makes them match first.
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in sorted(added, key=added.get)])
    return tok


MAX_INSTRUCTION_TOKENS = 512  # real instructions take 5-50 tokens; attention cost grows with the square
CHARS_PER_TOKEN_BOUND = 8  # text longer than 8x the token bound is refused before tokenizing (it costs memory)


class PromptTokenizer:
    """Tokenizes N1.5 prompts (cached per instruction and camera count) and left-pads batches.

    Instructions are bounded (`max_instruction_tokens`, and 8x that in characters before any tokenizing) and may
    not contain the vocabulary's special tokens (`<IMG_CONTEXT>`, `<|im_end|>`, ...): they would be read as prompt
    structure, not text, and put a wrong number of image slots into the prompt.
    """

    def __init__(self, eagle_dir: str | Path, n_image_tokens: int = 256, cache_size: int = 256,
                 max_instruction_tokens: int = MAX_INSTRUCTION_TOKENS):
        self.tokenizer = load_qwen2_tokenizer(eagle_dir)
        self.n_image_tokens = n_image_tokens
        self.max_instruction_tokens = max_instruction_tokens
        self.pad_id = self.tokenizer.token_to_id(PAD_TOKEN)
        self.image_token_id = self.tokenizer.token_to_id(IMAGE_TOKEN)
        if self.pad_id is None or self.image_token_id is None:
            raise ValueError(f"{eagle_dir}: tokenizer lacks {PAD_TOKEN} or {IMAGE_TOKEN}")
        self.special_tokens = tuple(json.loads((Path(eagle_dir) / "added_tokens.json").read_text(encoding="utf-8")))
        self.encode = lru_cache(maxsize=cache_size)(self._encode)
        self._template_length = lru_cache(maxsize=8)(lambda n_cameras: len(self._tokens("", n_cameras)))

    @classmethod
    def for_model(cls, config: "Gr00tConfig", max_instruction_tokens: int = MAX_INSTRUCTION_TOKENS) -> "PromptTokenizer":
        """The tokenizer of a model's Eagle assets, checked to put images where the model expects them."""
        if config.eagle_dir is None:
            raise ValueError("no Eagle asset folder (tokenizer) for this checkpoint: pass eagle_path=... "
                             "or place eagle2_hg_model/ in the checkpoint")
        tokenizer = cls(config.eagle_dir, config.num_image_tokens, max_instruction_tokens=max_instruction_tokens)
        if tokenizer.image_token_id != config.image_token_index:
            raise ValueError(f"{config.eagle_dir}: {IMAGE_TOKEN} has id {tokenizer.image_token_id}, "
                             f"the model expects image_token_index {config.image_token_index}")
        return tokenizer

    def _tokens(self, instruction: str, n_cameras: int) -> tuple[int, ...]:
        prompt = build_prompt(instruction, n_cameras, self.n_image_tokens)
        return tuple(self.tokenizer.encode(prompt, add_special_tokens=False).ids)

    def _encode(self, instruction: str, n_cameras: int) -> tuple[int, ...]:
        """The prompt's token ids; a ValueError for an instruction that is too long or holds special tokens."""
        limit = self.max_instruction_tokens
        if len(instruction) > CHARS_PER_TOKEN_BOUND * limit:
            raise ValueError(f"instruction of {len(instruction)} characters is too long: at most "
                             f"{CHARS_PER_TOKEN_BOUND * limit} characters / {limit} tokens (max_instruction_tokens)")
        found = [token for token in self.special_tokens if token in instruction]
        if found:
            raise ValueError(f"instruction contains the special token(s) {found[:3]}, which the prompt reserves "
                             "for its own structure")
        ids = self._tokens(instruction, n_cameras)
        length = len(ids) - self._template_length(n_cameras)
        if length > limit:
            raise ValueError(f"instruction of {length} tokens is too long: at most {limit} (max_instruction_tokens)")
        return ids

    def __call__(self, instructions: list[str], n_cameras: int, multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), both (B, L) int64, left-padded with `<|endoftext|>` (mask 0 there) to the
        longest prompt; with `multiple` > 1, to the prompt template plus the longest instruction's tokens rounded
        up to a multiple of `multiple` (at least one): instructions of 1 to `multiple` tokens give one length."""
        rows = [self.encode(text, n_cameras) for text in instructions]
        length = max(len(r) for r in rows)
        if multiple > 1:
            template = self._template_length(n_cameras)
            length = template + -(-max(length - template, 1) // multiple) * multiple
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, length - len(row) :] = 1
        return ids, mask
