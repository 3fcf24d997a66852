"""Prompt construction and Qwen2-style tokenization (hand-written tiny vocabulary and the real N1.5 assets)."""

import json

import pytest
from shared_data import shared_path

from gr00t_fast.model.tokenizer import PromptTokenizer, build_prompt

# Real N1.5 ids (Qwen3 vocabulary + Eagle added tokens).
IMG_CONTEXT, IMG, END_IMG, IM_START, IM_END, PAD = 151669, 151670, 151671, 151644, 151645, 151643


def test_build_prompt_exact_string():
    prompt = build_prompt("Pick it's cube", n_cameras=2, n_image_tokens=2)
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<image 1><img><IMG_CONTEXT><IMG_CONTEXT></img><image 2><img><IMG_CONTEXT><IMG_CONTEXT></img>"
        "[\"Pick it's cube\"]<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.fixture
def tiny_assets(tmp_path):
    """Byte-level BPE over a handful of symbols ('Ġ' is the byte-level space), plus three added tokens."""
    vocab = {"a": 0, "b": 1, "Ġ": 2, "ab": 3, "Ġab": 4, "Ċ": 5, "x": 6}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\nĠ ab\n")
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<|endoftext|>": 7, "<IMG_CONTEXT>": 8, "<img>": 9}))
    return tmp_path


def test_tiny_tokenizer_hand_written_ids(tiny_assets):
    tok = PromptTokenizer(tiny_assets, n_image_tokens=2).tokenizer
    # added tokens are matched first; "ab ab" splits into "ab", " ab" -> merges; no BOS/EOS
    assert tok.encode("ab ab<img><IMG_CONTEXT><IMG_CONTEXT>\nx", add_special_tokens=False).ids == [3, 4, 9, 8, 8, 5, 6]
    assert tok.encode("ba", add_special_tokens=False).ids == [1, 0]


def test_tiny_tokenizer_left_padding(tiny_assets):
    pt = PromptTokenizer(tiny_assets, n_image_tokens=2)
    pt.encode = lambda text, n: {"long": (3, 4, 3), "short": (6,)}[text]
    ids, mask = pt(["long", "short"], 1)
    assert ids.tolist() == [[3, 4, 3], [7, 7, 6]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_added_tokens_keep_their_ids(tiny_assets):
    (tiny_assets / "added_tokens.json").write_text(json.dumps({"<|endoftext|>": 20, "<IMG_CONTEXT>": 8}))
    pt = PromptTokenizer(tiny_assets)
    assert (pt.pad_id, pt.image_token_id) == (20, 8)


@pytest.fixture(scope="module")
def real_tokenizer():
    return PromptTokenizer(shared_path("eagle2_hg_model"), n_image_tokens=256)


def test_real_prompt_one_camera(real_tokenizer):
    ids, mask = real_tokenizer(["Slide the green mug toward the sink."], n_cameras=1)
    row = ids[0].tolist()
    assert len(row) == 291 and mask.all()
    assert row[:11] == [IM_START, 8948, 198, 2610, 525, 264, 10950, 17847, 13, IM_END, 198]  # system line
    assert row[11:14] == [IM_START, 872, 198]  # "user\n"
    assert row[14:20] == [27, 1805, 220, 16, 29, IMG]  # "<image 1>" is plain text, then <img>
    assert row[20:276] == [IMG_CONTEXT] * 256 and row[276] == END_IMG
    assert row[-5:] == [IM_END, 198, IM_START, 77091, 198]  # "<|im_end|>\n<|im_start|>assistant\n"


def test_real_prompt_two_cameras_and_padding(real_tokenizer):
    ids, mask = real_tokenizer(["Hand the scissors over.", "Go."], n_cameras=2)
    for row, m in zip(ids.tolist(), mask.tolist()):
        real = [t for t, keep in zip(row, m) if keep]
        assert real.count(IMG_CONTEXT) == 512 and real.count(IMG) == 2 and real.count(END_IMG) == 2
        assert real[0] == IM_START and PAD not in real
    pad = mask.shape[1] - int(mask[1].sum())
    assert pad > 0 and ids[1, :pad].tolist() == [PAD] * pad and mask[1, :pad].sum() == 0


def test_encode_is_cached(real_tokenizer):
    first = real_tokenizer.encode("Fold the napkin.", 1)
    assert real_tokenizer.encode("Fold the napkin.", 1) is first
    assert real_tokenizer.encode.cache_info().hits >= 1


def test_for_model_checks_the_assets(tiny_checkpoint):
    import dataclasses

    from gr00t_fast.model import Gr00tConfig

    config = Gr00tConfig.from_checkpoint(tiny_checkpoint)
    assert PromptTokenizer.for_model(config).image_token_id == config.image_token_index
    with pytest.raises(ValueError, match="no Eagle asset folder"):
        PromptTokenizer.for_model(dataclasses.replace(config, eagle_dir=None))
    with pytest.raises(ValueError, match="the model expects image_token_index 7"):
        PromptTokenizer.for_model(dataclasses.replace(config, image_token_index=7))
