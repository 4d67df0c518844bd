#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora, fuzz/corpus/<target>/: small valid inputs (from tests/fixtures
and data/ where one exists) plus a few malformed ones aimed at each parser's checks; and their
libFuzzer dictionaries, fuzz/dict/<target>.dict: the keys and names each parser looks for.

    python3 fuzz/make_corpus.py      # rewrites fuzz/corpus/ and fuzz/dict/ from scratch
"""
import json
import pathlib
import shutil
import struct
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
FIXTURES = ROOT / "tests" / "fixtures"
DICT = ROOT / "fuzz" / "dict"


def put(target, name, data):
    path = CORPUS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def copy(target, source, name=None):
    put(target, name or source.name, source.read_bytes())


def safetensors(header, data_size, raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":"))
    return struct.pack("<Q", len(text)) + text.encode() + bytes(data_size)


def safetensors_seeds():
    t = "safetensors"
    put(t, "valid_mixed.safetensors", safetensors({
        "__metadata__": {"format": "pt"},
        "a.weight": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
        "b.weight": {"dtype": "F32", "shape": [3], "data_offsets": [8, 20]},
        "c.weight": {"dtype": "F16", "shape": [1, 2], "data_offsets": [20, 24]},
        "ids32": {"dtype": "I32", "shape": [2], "data_offsets": [24, 32]},
        "ids64": {"dtype": "I64", "shape": [1], "data_offsets": [32, 40]},
        "empty": {"dtype": "F32", "shape": [0, 4], "data_offsets": [40, 40]},
        "scalar": {"dtype": "F32", "shape": [], "data_offsets": [40, 44]}}, 44))
    put(t, "valid_empty_header.safetensors", safetensors({}, 0))
    put(t, "truncated_length.safetensors", b"\x10\x00\x00")
    put(t, "length_past_end.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
    put(t, "not_object.safetensors", safetensors(None, 0, raw_header="[1,2]"))
    put(t, "overlap.safetensors", safetensors({
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, 12))
    put(t, "begin_after_end.safetensors", safetensors({
        "a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, 8))
    put(t, "shape_overflow.safetensors", safetensors({
        "a": {"dtype": "F32", "shape": [4611686018427387904, 8, 0], "data_offsets": [0, 0]}}, 0))
    put(t, "unknown_dtype.safetensors", safetensors({
        "a": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}, 4))
    put(t, "duplicate_name.safetensors", safetensors(None, 8, raw_header=
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'))


def index_seeds():
    # Shard contents are fixed by the fuzzer (fuzz_safetensors_index.cpp); only the index varies.
    t = "safetensors_index"
    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    valid = {"metadata": {"total_size": 36},
             "weight_map": {"a.weight": s1, "b.weight": s1, "c.bias": s2, "c.weight": s2}}
    put(t, "valid.json", json.dumps(valid, indent=2))
    put(t, "missing_tensor.json", json.dumps({"weight_map": {"a.weight": s1, "c.bias": s2, "c.weight": s2}}))
    put(t, "wrong_shard.json", json.dumps({"weight_map": {"a.weight": s2, "b.weight": s1, "c.bias": s2, "c.weight": s2}}))
    put(t, "parent_dir.json", json.dumps({"weight_map": {"a.weight": "../" + s1}}))
    put(t, "absolute.json", json.dumps({"weight_map": {"a.weight": "/" + s1}}))
    put(t, "no_such_shard.json", json.dumps({"weight_map": {"a.weight": "model-00003-of-00002.safetensors"}}))
    put(t, "not_a_map.json", json.dumps({"weight_map": [s1, s2]}))
    put(t, "duplicate_key.json",
        '{"weight_map":{"a.weight":"%s","a.weight":"%s","b.weight":"%s","c.bias":"%s","c.weight":"%s"}}' % (s1, s1, s1, s2, s2))


def config_seeds():
    t = "hf_config"
    copy(t, FIXTURES / "configs" / "qwen3_vl_4b_instruct.json")
    copy(t, FIXTURES / "configs" / "qwen3_vl_4b_instruct_v5.json")
    copy(t, FIXTURES / "qwen3_vl" / "tiny_tied" / "config.json", "tiny_tied.json")
    copy(t, FIXTURES / "qwen3_vl" / "tiny_untied" / "config.json", "tiny_untied.json")
    put(t, "empty_object.json", "{}")
    put(t, "wrong_model_type.json", '{"model_type":"llama","text_config":{},"vision_config":{}}')
    tiny = json.loads((FIXTURES / "qwen3_vl" / "tiny_tied" / "config.json").read_text())
    tiny["text_config"]["head_dim"] = 15
    put(t, "odd_head_dim.json", json.dumps(tiny))
    # A finding of fuzz_hf_config, kept as a regression seed: mrope_section entries summing past int64.
    tiny["text_config"]["head_dim"] = 16
    tiny["text_config"]["rope_parameters"]["mrope_section"] = [9223372036854775807, 20, 20]
    put(t, "mrope_section_overflow.json", json.dumps(tiny))


def tokenizer_seeds():
    t = "tokenizer"
    copy(t, FIXTURES / "tokenizer" / "tiny_pairs.json")
    copy(t, FIXTURES / "tokenizer" / "tiny_strings.json")
    put(t, "empty_object.json", "{}")
    put(t, "minimal_bpe.json", json.dumps({
        "normalizer": None, "pre_tokenizer": None, "decoder": None, "added_tokens": [],
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}))
    # A finding of fuzz_tokenizer, kept as a regression seed: one id near 2^32 made the dense id tables
    # take 32 GiB.
    sparse = json.loads((FIXTURES / "tokenizer" / "tiny_pairs.json").read_text())
    sparse["model"]["vocab"][next(iter(sparse["model"]["vocab"]))] = 4000000000
    put(t, "sparse_id.json", json.dumps(sparse))


def tokenizer_encode_seeds():
    # Texts of the Qwen3 reference cases, a few per file so the corpus stays small.
    t = "tokenizer_encode"
    cases = json.loads((FIXTURES / "tokenizer" / "qwen3_cases.json").read_text())["cases"]
    texts = sorted({c["text"] for c in cases if 0 < len(c["text"].encode()) <= 200}, key=lambda x: (len(x), x))
    for i in range(0, len(texts), 40):
        put(t, "qwen3_cases_%02d.txt" % (i // 40), "\n".join(texts[i:i + 40]))
    put(t, "special_tokens.txt", "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>")
    # Added tokens are split off before NFC: ">" + U+0338 stays two characters here (the harness
    # once expected U+226F).
    put(t, "added_token_then_combining_mark.txt", "x<|image_pad|>\u0338 y\n<think>\u0301")
    put(t, "unnormalized.txt", "e\u0301 \u212b \uac00\u11a8 \ufb01 \u0041\u030a\u0323")


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def image_seeds():
    t = "image"
    for name in ("gray8.png", "gray16.png", "la8.png", "la16.png", "rgb16.png", "alpha_grid.png", "png_truncated.png",
                 "jpeg_gray.jpg", "jpeg_420.jpg", "jpeg_420_progressive.jpg", "jpeg_420_restart.jpg", "jpeg_422.jpg",
                 "jpeg_444_progressive.jpg", "jpeg_cmyk.jpg", "jpeg_truncated.jpg", "jpeg_no_eoi.jpg"):
        copy(t, FIXTURES / "images" / name)
    put(t, "jpeg_soi_only.jpg", b"\xff\xd8\xff")
    put(t, "png_signature_only.png", b"\x89PNG\r\n\x1a\n")
    # A valid PNG whose first IDAT chunk is empty: stb_image then copies 0 bytes to a null buffer
    # (suppressed in fuzz/ubsan.supp; found by fuzz_image).
    put(t, "png_empty_first_idat.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
        + png_chunk(b"IDAT", b"") + png_chunk(b"IDAT", zlib.compress(b"\x00\x10\x20\x30\x80")) + png_chunk(b"IEND", b""))
    # A finding of fuzz_image, kept as a regression seed: an 81-byte PNG whose second IDAT chunk
    # declares 1.6 GiB; stb_image grows its buffer to 2 GiB before finding the bytes missing.
    put(t, "png_idat_length_past_end.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\xff")) + struct.pack(">I", 0x66000020) + b"IDAT" + bytes(16))


def caption_seeds():
    t = "captions"
    copy(t, ROOT / "data" / "captions" / "coco2017_captions_small.txt")
    put(t, "newlines.txt", "  first caption \r\nsecond\rthird\n\n\t\n\x0bfourth\x0c\x1c\x1d\x1e\x85 done\u2028last")
    put(t, "unicode_spaces.txt", "\u3000caf\u00e9 \u00a0\n\u2029\u00a0 \u4f60\u597d\u3000")
    put(t, "invalid_utf8.txt", b"ok\n\xc3\x28 broken\n\xed\xa0\x80 surrogate\n\xf4\x90\x80\x80 too high\n")
    put(t, "blank.txt", " \n\r\n\t\n")


def jsonl_seeds():
    t = "image_caption_jsonl"
    put(t, "valid.jsonl", '{"image": "images/cat.png", "caption": "A cat on a mat."}\n'
                          '\n'
                          '{"image": "/abs/dog.jpg", "caption": "A dog \\u00e9 \\ud83d\\ude00", "extra": [1, 2]}\r\n')
    put(t, "missing_field.jsonl", '{"image": "a.png"}\n')
    put(t, "wrong_type.jsonl", '{"image": 3, "caption": "x"}\n')
    put(t, "not_object.jsonl", '["a.png", "x"]\n')
    put(t, "bad_json.jsonl", '{"image": "a.png", "caption": "x"\n')
    put(t, "invalid_utf8.jsonl", b'{"image": "a.png", "caption": "\xff"}\n')


def recipe_assignment_seeds():
    # Group and module names of the fixed search space in fuzz_recipe_assignment.cpp.
    t = "recipe_assignment"
    layer = "model.language_model.layers.0."
    groups = ["model.visual.blocks.0.attn.qkv", layer + "self_attn.q_proj", layer + "self_attn.o_proj",
              layer + "mlp.gate_proj", layer + "mlp.down_proj", "lm_head"]
    picks = ["NONE(effective-bits: 16.0)", "FP8_DEFAULT_CFG(effective-bits: 8.0)", "INT8_DEFAULT_CFG(effective-bits: 8.0)",
             "CUSTOM_2(effective-bits: 4.0)", "NONE(effective-bits: 16.0)", "FP8_DEFAULT_CFG(effective-bits: 8.0)"]
    formats = ["CUSTOM_2(effective-bits: 4.0)", "FP8_DEFAULT_CFG(effective-bits: 8.0)",
               "INT8_DEFAULT_CFG(effective-bits: 8.0)", "NONE(effective-bits: 16.0)"]
    manifest = {"scheme": {"name": "mix", "quant_formats": ["w4a8", "FP8_DEFAULT_CFG", "INT8_DEFAULT_CFG"]},
                "layer_sensitivity": {g + ".quant_recipe": {"formats": formats, "scores": [0.0] * 4, "costs": [1.0] * 4}
                                      for g in groups},
                "chosen_recipes": {g + ".quant_recipe": p for g, p in zip(groups, picks)}}
    put(t, "manifest.json", json.dumps(manifest, indent=2))
    custom = dict(manifest, scheme={"quant_formats": ["fp8_e4m3", "int8_w8a8", "w4a8"]},
                  chosen_recipes={g + ".quant_recipe": "CUSTOM_%d(effective-bits: %s)" % (i % 3, "4.0" if i % 3 == 2 else "8.0")
                                  for i, g in enumerate(groups[1:], 1)})
    put(t, "custom_names.json", json.dumps(custom, indent=2))
    put(t, "map.json", json.dumps({layer + "*": "fp8_e4m3", layer + "mlp.*": "INT8_DEFAULT_CFG", "*.down_pro?": "w4a8",
                                   "lm_head": "NONE", "model.visual.*": "none"}, indent=2))
    put(t, "map_fused_conflict.json", json.dumps({"*.q_proj": "fp8_e4m3", "*.k_proj": "wfp8_afp8"}))
    put(t, "map_sets.json", json.dumps({"*[!x]_proj": "w4a8(effective-bits: 4.0)", "*[q-v]_proj": "fp8_e4m3"}))
    put(t, "map_no_match.json", json.dumps({"model.language_model.layer.*": "fp8_e4m3"}))
    put(t, "manifest_without_choice.json", json.dumps({"scheme": {"name": "mix"}, "layer_sensitivity": {}}))
    put(t, "duplicate_key.json", '{"lm_head": "fp8_e4m3", "lm_head": "none"}')


JSON_TOKENS = ["{", "}", "[", "]", ":", ",", '"', "null", "true", "false", "-1", "0", "1e309",
               "18446744073709551616", "9223372036854775807", "\\u0000", "\\ud800"]


def dictionary(target, comment, words):
    """A libFuzzer dictionary: one quoted entry a line, bytes outside printable ASCII as \\xNN."""
    def quote(word):
        data = word.encode() if isinstance(word, str) else word
        return "".join("\\" + chr(b) if chr(b) in '\\"' else chr(b) if 32 <= b < 127 else "\\x%02x" % b for b in data)
    lines = ["# " + comment] + ['kw%d="%s"' % (i, quote(w)) for i, w in enumerate(dict.fromkeys(words))]
    (DICT / (target + ".dict")).write_text("\n".join(lines) + "\n")


def dictionaries():
    q = lambda words: ['"%s"' % w for w in words]
    dictionary("safetensors", "safetensors header: keys and dtype names", JSON_TOKENS + q([
        "dtype", "shape", "data_offsets", "__metadata__", "format", "pt", "BF16", "F16", "F32", "I32", "I64", "F64",
        "U8", "F8_E4M3", "BOOL"]) + ["\x00\x00\x00\x00\x00\x00\x00"])
    dictionary("safetensors_index", "model.safetensors.index.json: keys, the fuzzer's shard and tensor names",
               JSON_TOKENS + q(["weight_map", "metadata", "total_size", "model-00001-of-00002.safetensors",
                                "model-00002-of-00002.safetensors", "model.safetensors.index.json", "a.weight",
                                "b.weight", "c.weight", "c.bias", "..", "/", "./", ""]))
    dictionary("hf_config", "Qwen3-VL config.json: the fields aq reads", JSON_TOKENS + q([
        "attention_bias", "deepstack_visual_indexes", "default", "depth", "gelu_pytorch_tanh", "head_dim", "hidden_act",
        "hidden_size", "image_token_id", "in_channels", "intermediate_size", "model_type", "mrope", "mrope_interleaved",
        "mrope_section", "num_attention_heads", "num_heads", "num_hidden_layers", "num_key_value_heads",
        "num_position_embeddings", "out_hidden_size", "patch_size", "qwen3_vl", "rms_norm_eps", "rope_parameters",
        "rope_scaling", "rope_theta", "rope_type", "silu", "spatial_merge_size", "temporal_patch_size", "text_config",
        "tie_word_embeddings", "type", "video_token_id", "vision_config", "vision_end_token_id", "vision_start_token_id",
        "vocab_size"]))
    dictionary("tokenizer", "tokenizer.json: the fields and type names aq reads", JSON_TOKENS + q([
        "BPE", "ByteLevel", "Isolated", "NFC", "Regex", "String", "Sequence", "Split", "add_prefix_space", "added_tokens",
        "behavior", "content", "continuing_subword_prefix", "decoder", "dropout", "end_of_word_suffix", "id",
        "ignore_merges", "invert", "lstrip", "merges", "model", "normalized", "normalizer", "pattern", "pre_tokenizer",
        "pretokenizers", "rstrip", "single_word", "special", "step", "trim_offsets", "use_regex", "vocab",
        "<|im_start|>", "\u0120", "(?i:'s|'t|'re|'ve|'m|'ll|'d)", "\\p{L}+", "\\s+(?!\\S)"]))
    dictionary("tokenizer_encode", "Qwen3 special tokens and what its pre-tokenizer splits on",
               ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>",
                "<think>", "'s", "'T", "\r\n", "  ", "\u00e9", "e\u0301", "\u4f60", "\U0001f600", "123456"])
    dictionary("image_caption_jsonl", "image-caption JSON lines",
               JSON_TOKENS + q(["image", "caption"]) + ["\n", "\r\n", "\r", b"\xef\xbb\xbf", b"\xc2\x85"])
    dictionary("recipe_assignment", "recipe files: manifest keys, recipe spellings, the fuzzer's module names",
               JSON_TOKENS + q(["chosen_recipes", "scheme", "quant_formats", "layer_sensitivity", "formats",
                                "autoquant_state", "fp8_e4m3", "int8_w8a8", "w4a8", "nvfp4", "none", "NONE",
                                "wfp8_afp8", "FP8_DEFAULT_CFG", "INT8_DEFAULT_CFG", "CUSTOM_0", "CUSTOM_2",
                                "(effective-bits: 8.0)", "(effective-bits: 4.0)", "(effective-bits: 16.0)",
                                ".quant_recipe", "model.language_model.layers.0.", "self_attn.q_proj", "mlp.gate_proj",
                                "model.visual.blocks.0.attn.qkv", "lm_head"]) + ["*", "?", "[!", "[a-z]"])
    dictionary("captions", "caption lines: newlines and the spaces Python strips",
               ["\n", "\r\n", "\r", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\xc2\x85", b"\xc2\xa0", b"\xe2\x80\xa8",
                b"\xe2\x80\xa9", b"\xe3\x80\x80", b"\xef\xbb\xbf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])
    dictionary("image", "PNG chunk types and JPEG markers", [
        b"\x89PNG\r\n\x1a\n", "IHDR", "IDAT", "IEND", "PLTE", "tRNS", "gAMA", "CgBI",
        b"\xff\xd8", b"\xff\xd9", b"\xff\xc0", b"\xff\xc1", b"\xff\xc2", b"\xff\xc4", b"\xff\xdb", b"\xff\xdd",
        b"\xff\xda", b"\xff\xe0JFIF\x00", b"\xff\xeeAdobe", b"\xff\xd0"])


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    shutil.rmtree(DICT, ignore_errors=True)
    DICT.mkdir(parents=True)
    dictionaries()
    safetensors_seeds()
    index_seeds()
    config_seeds()
    tokenizer_seeds()
    tokenizer_encode_seeds()
    image_seeds()
    caption_seeds()
    jsonl_seeds()
    recipe_assignment_seeds()


if __name__ == "__main__":
    main()
