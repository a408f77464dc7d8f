#!/usr/bin/env python3
"""Deterministic tokenizer reference corpus: generates ~22k seeded test strings per tokenizer and
writes, for each tokenizer in ../shared/tokenizers (and the GGUF vocabulary of stories260K), a JSONL
of {text, ids_with_special, ids_without, decoded, decoded_skip} computed by the reference, plus
random-id decode cases. tokenizer_hf_test (C++) compares bitexact's tokenizer against these files.

References: Hugging Face `tokenizers` (tokenizer.json files); for the GGUF SentencePiece vocabulary,
the `sentencepiece` library on a ModelProto rebuilt from the GGUF metadata (what llama.cpp's SPM
tokenizer and HF's slow LlamaTokenizer implement), with control tokens split out of the text first
as llama.cpp does, and HF `tokenizers`' Llama decoder chain for decoding.
Usage: scripts/tokenizer_corpus.py --out build/tokref [--shared ../shared] [--per-category 2000]
"""
import argparse
import json
import os
import random
import sys
import time

WORDS = ("the of and to in is was that for it with as his on be at by I this had not are but from "
         "or have an they which one you were her all she there would their we him been has when who "
         "will more no if out so said what up its about into than them can only other new some could "
         "time these two may then do first any my now such like our over man me even most made after "
         "also did many before must through back years where much your way well down should because "
         "each just those people Mr how too little state good very make world still own see men work "
         "long get here between both life being under never day same another know while last might us "
         "great old year off come since against go came right used take three Lily Tim dog ball park "
         "happy sun tree Once upon a time there was little girl named").split()
PUNCT = list(".,;:!?-\"'()[]{}") + ["...", "--", "?!", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
                                     "'S", "'LL", "\u017fs"]
CODE = [
    "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "if x == None:\n        pass\n", "#include <stdio.h>\nint main() { printf(\"%d\\n\", 42); }\n",
    "const f = (a, b) => a + b;  // add\n", "SELECT * FROM t WHERE id = 7;\n",
    "  x = [1, 2, 3]\n\n\n  y = {'a': 1}\r\n", "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }\n",
    "<div class=\"x\">&nbsp;</div>\n", "$ ls -la | grep '^d' > out.txt 2>&1\n",
    "\t\tif (p != NULL) free(p);\n", "λx. x + 1 ≠ 0 ∀x ∈ ℕ\n", "    # comment 12345678901234567890\n"]
CJK_RANGES = [(0x4E00, 0x9FFF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3),
              (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0xFF01, 0xFF5E), (0x3000, 0x303F)]
EMOJI = ["\U0001F600", "\U0001F44D", "\U0001F3FD", "\u2764\ufe0f", "\U0001F468\u200d\U0001F469"
         "\u200d\U0001F467\u200d\U0001F466", "\U0001F469\U0001F3FF\u200d\U0001F4BB",
         "\U0001F1FA\U0001F1F8", "\U0001F1EF\U0001F1F5", "1\ufe0f\u20e3", "\U0001F3F3\ufe0f\u200d"
         "\U0001F308", "\U0001F44B\U0001F3FB", "\U0001F9D1\U0001F3FE\u200d\U0001F91D\u200d"
         "\U0001F9D1\U0001F3FC", "\U0001F408\u200d\u2B1B", "\u263A", "\U0001F926\U0001F3FC\u200d"
         "\u2642\ufe0f", "\U0001FAE0", "\U0001F977"]
RTL = ["\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
       "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", "\u0627\u0644\u0639\u0631\u0628\u064a"
       "\u0629 123 \u0665\u0666\u0667", "\u200f\u05d0\u05d1\u05d2\u200e abc", "\u0641\u064e\u062a"
       "\u0652\u062d\u064e\u0629", "\u06cc\u06a9 \u062f\u0648 \u0633\u0647", "\u202bRTL\u202c",
       "\u0710\u0712\u0713", "\u07ca\u07cb\u07cc"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\n\n", " \n ", "\u00a0", "\u3000", "\u2009", "\r",
          "\u000b", "\u000c", "\u0085", "\u2028", "\u200b", "\ufeff"]


def rand_cp(rng, astral=True):
    while True:
        cp = rng.randrange(0x110000 if astral else 0x10000)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def prose(rng):
    out = []
    for _ in range(rng.randint(1, 40)):
        w = rng.choice(WORDS)
        r = rng.random()
        if r < 0.1:
            w = w.upper()
        elif r < 0.25:
            w = w.capitalize()
        out.append(w)
        if rng.random() < 0.2:
            out.append(rng.choice(PUNCT))
        if rng.random() < 0.05:
            out.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
    return rng.choice([" ", " ", "", "  "]).join(out) if rng.random() < 0.1 else " ".join(out)


def code(rng):
    s = "".join(rng.choice(CODE) for _ in range(rng.randint(1, 4)))
    return s if rng.random() < 0.7 else s.replace("    ", "\t")


def cjk(rng):
    out = []
    for _ in range(rng.randint(1, 30)):
        lo, hi = rng.choice(CJK_RANGES)
        out.append(chr(rng.randint(lo, hi)))
        if rng.random() < 0.15:
            out.append(rng.choice([" ", "\u3002", "\uff0c", rng.choice(WORDS), "123"]))
    return "".join(out)


def emoji(rng):
    out = []
    for _ in range(rng.randint(1, 15)):
        out.append(rng.choice(EMOJI))
        if rng.random() < 0.3:
            out.append(rng.choice([" ", rng.choice(WORDS), "\n", "!"]))
    return "".join(out)


def combining(rng):
    out = []
    for _ in range(rng.randint(1, 25)):
        out.append(rng.choice("aeiouAEIOUnNcCsz\u0391\u03b1\u0430\u0915 "))
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            out.append(chr(rng.choice([rng.randint(0x300, 0x36F), 0x93C, 0x94D, 0x1AB0, 0x20D7,
                                       0x302A, 0x3099])))
    s = "".join(out)
    import unicodedata
    return unicodedata.normalize(rng.choice(["NFC", "NFD", "NFKD"]), s) if rng.random() < 0.5 else s


def rtl(rng):
    return " ".join(rng.choice(RTL + WORDS[:20]) for _ in range(rng.randint(1, 10)))


def whitespace(rng):
    out = []
    for _ in range(rng.randint(1, 20)):
        r = rng.random()
        if r < 0.4:
            out.append(rng.choice(SPACES) * rng.choice([1, 1, 2, 3, 7, 16, 100]))
        elif r < 0.45:
            out.append(rng.choice([" ", "\t", "\n"]) * rng.randint(200, 3000))
        else:
            out.append(rng.choice(WORDS))
    return "".join(out)


def long_word(rng):
    r = rng.random()
    n = rng.randint(50, 3000)
    if r < 0.3:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
    if r < 0.5:
        return rng.choice(WORDS) * (n // 4 + 1)
    if r < 0.7:
        return "".join(rng.choice("0123456789") for _ in range(n))
    if r < 0.85:
        return "".join(rng.choice(["\u4e00", "\u00e9", "\U0001F600", "a", "\u0627"]) for _ in range(n // 4))
    return rng.choice(["a", "=", "-", "\u2581", "_", "!", "."]) * n


def random_unicode(rng):
    return "".join(rand_cp(rng, astral=rng.random() < 0.5) for _ in range(rng.randint(1, 40)))


def mixed(rng):
    gens = [prose, code, cjk, emoji, combining, rtl, whitespace, random_unicode]
    return "".join(rng.choice(gens)(rng) for _ in range(rng.randint(2, 4)))


def with_specials(rng, specials):
    out = []
    for _ in range(rng.randint(1, 8)):
        r = rng.random()
        if r < 0.4 and specials:
            sp = rng.choice(specials)
            if rng.random() < 0.15:
                sp = sp[:rng.randint(1, max(1, len(sp) - 1))]  # a prefix of a special token
            out.append(sp)
        elif r < 0.7:
            out.append(rng.choice(WORDS))
        else:
            out.append(rng.choice(SPACES))
    return "".join(out)


CATEGORIES = [prose, code, cjk, emoji, combining, rtl, whitespace, long_word, random_unicode, mixed]


def make_strings(seed, per_category, specials):
    rng = random.Random(seed)
    texts = ["", " ", "  ", "\n", "a", "Hello world", "Once upon a time", " Hello", "hello\n\nworld",
             "\u00e9", "e\u0301", "\ufffd", "<0x41>", "\u2581", "\u2581\u2581x"]
    for gen in CATEGORIES:
        n = per_category if gen not in (long_word,) else per_category // 4
        for _ in range(n):
            texts.append(gen(rng))
    for _ in range(per_category):
        texts.append(with_specials(rng, specials))
    return texts


def random_ids(rng, vocab_size, special_ids, count):
    cases = []
    for _ in range(count):
        ids = []
        for _ in range(rng.randint(1, 24)):
            r = rng.random()
            if r < 0.1 and special_ids:
                ids.append(rng.choice(special_ids))
            elif r < 0.3:
                ids.append(rng.randrange(min(vocab_size, 600)))  # byte tokens live down there
            else:
                ids.append(rng.randrange(vocab_size))
        cases.append(ids)
    return cases


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def hf_reference(name, tok_dir, out_dir, per_category):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    added = tok.get_added_tokens_decoder()
    specials = [t.content for t in added.values()]
    special_ids = sorted(added.keys())
    texts = make_strings(hash_seed(name), per_category, specials)
    with_sp = tok.encode_batch(texts, add_special_tokens=True)
    without = tok.encode_batch(texts, add_special_tokens=False)
    ids_w = [e.ids for e in with_sp]
    ids_wo = [e.ids for e in without]
    decoded = tok.decode_batch(ids_wo, skip_special_tokens=False)
    decoded_skip = tok.decode_batch(ids_w, skip_special_tokens=True)
    rows = [{"text": t, "ids_with_special": a, "ids_without": b, "decoded": d, "decoded_skip": ds}
            for t, a, b, d, ds in zip(texts, ids_w, ids_wo, decoded, decoded_skip)]
    rng = random.Random(hash_seed(name) + 1)
    id_cases = random_ids(rng, tok.get_vocab_size(with_added_tokens=True), special_ids, 3000)
    dec = tok.decode_batch(id_cases, skip_special_tokens=False)
    dec_skip = tok.decode_batch(id_cases, skip_special_tokens=True)
    rows += [{"ids": i, "decoded": d, "decoded_skip": s} for i, d, s in zip(id_cases, dec, dec_skip)]
    write(os.path.join(out_dir, name + ".jsonl"), rows)
    return len(texts), {"vocab_size": tok.get_vocab_size(with_added_tokens=True)}


def hash_seed(name):
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) * 7919


def gguf_reference(name, gguf_path, out_dir, per_category):
    import gguf
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb
    from tokenizers import decoders
    r = gguf.GGUFReader(gguf_path)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    scores = r.fields["tokenizer.ggml.scores"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    bos = int(r.fields["tokenizer.ggml.bos_token_id"].contents())
    eos = int(r.fields["tokenizer.ggml.eos_token_id"].contents())
    add_space_prefix = bool(r.fields["tokenizer.ggml.add_space_prefix"].contents()) \
        if "tokenizer.ggml.add_space_prefix" in r.fields else True
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.vocab_size = len(tokens)
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = add_space_prefix
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    type_map = {1: pb.ModelProto.SentencePiece.NORMAL, 2: pb.ModelProto.SentencePiece.UNKNOWN,
                3: pb.ModelProto.SentencePiece.CONTROL, 4: pb.ModelProto.SentencePiece.USER_DEFINED,
                5: pb.ModelProto.SentencePiece.UNUSED, 6: pb.ModelProto.SentencePiece.BYTE}
    for t, s, ty in zip(tokens, scores, types):
        p = m.pieces.add()
        p.piece, p.score, p.type = t, float(s), type_map[int(ty)]
    sp = spm.SentencePieceProcessor(model_proto=m.SerializeToString())
    # llama.cpp matches control, user-defined and unknown tokens in the text (parse_special).
    specials = sorted({t for t, ty in zip(tokens, types) if int(ty) in (2, 3, 4)}, key=len,
                      reverse=True)
    special_set = set(specials)
    tok_id = {t: i for i, t in enumerate(tokens)}

    def split_specials(text):
        out, i, start = [], 0, 0
        while i < len(text):
            hit = next((s for s in specials if text.startswith(s, i)), None)
            if hit:
                if start < i:
                    out.append(text[start:i])
                out.append((tok_id[hit],))
                i += len(hit)
                start = i
            else:
                i += 1
        if start < len(text):
            out.append(text[start:])
        return out

    def encode(text, add_special):
        ids = [bos] if add_special else []
        for frag in split_specials(text):
            ids += list(frag) if isinstance(frag, tuple) else sp.encode(frag)
        return ids

    chain = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_space_prefix:
        chain.append(decoders.Strip(" ", 1, 0))
    dec = decoders.Sequence(chain)
    special_ids = {i for i, ty in enumerate(types) if int(ty) in (2, 3)}

    def decode(ids, skip):
        pieces = [tokens[i] for i in ids if 0 <= i < len(tokens) and not (skip and i in special_ids)]
        return dec.decode(pieces)

    texts = make_strings(hash_seed(name), per_category, list(special_set))
    rows = []
    for t in texts:
        a, b = encode(t, True), encode(t, False)
        rows.append({"text": t, "ids_with_special": a, "ids_without": b, "decoded": decode(b, False),
                     "decoded_skip": decode(a, True)})
    rng = random.Random(hash_seed(name) + 1)
    for ids in random_ids(rng, len(tokens), sorted(special_ids), 3000):
        rows.append({"ids": ids, "decoded": decode(ids, False), "decoded_skip": decode(ids, True)})
    write(os.path.join(out_dir, name + ".jsonl"), rows)
    return len(texts), {"vocab_size": len(tokens)}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"))
    ap.add_argument("--per-category", type=int, default=2000)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    manifest = {}
    for name in ("qwen3", "llama3", "llama2"):
        d = os.path.join(args.shared, "tokenizers", name)
        t0 = time.time()
        n, info = hf_reference(name, d, args.out, args.per_category)
        manifest[name] = dict(path=os.path.abspath(d), strings=n, **info)
        print(f"{name}: {n} strings in {time.time() - t0:.1f}s", file=sys.stderr)
    g = os.path.join(args.shared, "models", "stories260K.gguf")
    t0 = time.time()
    n, info = gguf_reference("stories260K", g, args.out, args.per_category)
    manifest["stories260K"] = dict(path=os.path.abspath(g), strings=n, **info)
    print(f"stories260K: {n} strings in {time.time() - t0:.1f}s", file=sys.stderr)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
