#!/usr/bin/env python3
"""Regenerate Tests/Fixtures/tokenizer/cases.json: CLIP token ids of tricky prompts as
AUTOMATIC1111 1.10 computes them, next to what the oracle's tokenizer computes.

A1111 1.10 (transformers==4.30.2, ftfy installed) tokenizes with transformers' *slow*
Python CLIPTokenizer:  text -> whitespace_clean(ftfy.fix_text(text)).lower() -> CLIP regex
-> byte-level BPE (special tokens <|startoftext|>/<|endoftext|> split out first).
The oracle (shared/ref/reference.py) uses transformers 5.x, whose CLIPTokenizer is the
`tokenizers`-backed one: NFC + (\\s+ -> " ") + Lowercase normalizer, no ftfy. They differ
on some inputs; the Swift tokenizer follows A1111 ("ids").

Usage (ref venv, see tools/README.md):
    REF_VENV/bin/pip download --no-deps transformers==4.30.2 -d T430
    REF_VENV/bin/python -m zipfile -e T430/transformers-4.30.2-py3-none-any.whl T430/unpacked
    REF_VENV/bin/python tools/make_tokenizer_cases.py --tokenizer MODELS_DIR/clip-tokenizer \
        --transformers430 T430/unpacked

Each entry of cases.json:
  text                 the input string (one tokenizer call, as A1111 makes per emphasis fragment)
  ids                  A1111-faithful ids, no BOS/EOS (transformers 4.30.2 slow CLIPTokenizer + ftfy)
  ids_transformers524  the oracle's ids (transformers 5.24 CLIPTokenizer), no BOS/EOS
  normalized           whitespace_clean(ftfy.fix_text(text)).lower(), the string the CLIP regex sees
  agree                ids == ids_transformers524
  note                 what the case exercises
The script runs each tokenizer in its own subprocess (the two transformers versions cannot
share one interpreter) and also checks its own standalone re-implementation of the A1111 path
(`a1111_tokenize` below: ftfy + regex + BPE over vocab.json/merges.txt) against 4.30.2.
"""
import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "Tests", "Fixtures", "tokenizer", "cases.json")

GOLDEN_PROMPT = "a photo of a (cat:1.2), [blurry] masterpiece, \\(escaped\\)"

CASES = [
    ("a photo of a cat", "plain English"),
    ("A PHOTO OF A Cat, MasterPiece", "upper / mixed case"),
    ("猫，可爱。真棒！（高清）", "full-width punctuation ， ！ （ ） (ftfy width fix) and 。 (unchanged)"),
    ("‘single’ and “double” quotes", "curly quotes (ftfy uncurl_quotes)"),
    ("it’s the cat’s toy", "curly apostrophe before s: becomes the 's contraction only after uncurling"),
    ("猫", "one CJK ideograph"),
    ("一只可爱的猫", "CJK sentence"),
    ("ねこ カタカナ ｶﾀｶﾅ ｶﾞｷﾞｸﾞ ﾊﾟﾝ", "hiragana, katakana, half-width katakana incl. voiced marks (width fix + NFC)"),
    ("🐱", "emoji"),
    ("👍🏽 thumbs up", "emoji + skin-tone modifier"),
    ("🇯🇵 🇺🇸 🏴󠁧󠁢󠁥󠁮󠁧󠁿 flags", "regional-indicator flags and a tag-sequence flag (tags are kept)"),
    ("👨‍👩‍👧 family", "ZWJ emoji sequence"),
    ("café naïve résumé", "precomposed accents"),
    ("cafe\u0301 nai\u0308ve", "decomposed accents (NFC in both)"),
    ("&amp; &lt;cat&gt; &#39;quoted&#39; &eacute; &nbsp;x", "HTML entities, no literal '<': ftfy unescapes"),
    ("tom &amp; jerry <b>bold</b>", "literal '<' in the segment: ftfy leaves entities alone"),
    ("&amp; first line\n<b> second &amp;", "ftfy's per-line segments: '<' only on line 2"),
    ("<b> first line\n&amp; second", "'<' on line 1 disables unescaping for later lines too"),
    ("it's don't we'll I'M YOU'RE they've she'd", "ASCII contractions, upper case ones too"),
    ("rock'n'roll 'quoted' o'clock", "apostrophes that are not contractions"),
    ("1024x768 3.14 2nd 100% 1girl", "numbers: one digit per token"),
    ("a  lot   of\tspaces\nand\r\nnewlines  \t", "runs of spaces / tabs / CR LF"),
    ("\u00a0nbsp\u2009thin\u3000ideographic\u2028ls", "Unicode spaces; U+3000 via ftfy width fix"),
    ("cafÃ© crÃ¨me", "UTF-8 read as Latin-1 (mojibake): ftfy fix_encoding"),
    ("the Mona Lisaâ€™s smile", "mojibake of a curly apostrophe: decoded, then uncurled"),
    ("zero\u200bwidth\u200cjoiner\u200dx", "zero-width space / non-joiner / joiner (kept)"),
    ("\ufeffbom at start and \u2060wj", "BOM (ftfy removes it), word joiner (kept)"),
    ("C1 \x93quoted\x94 \x85 end", "C1 controls: ftfy reads them as Windows-1252"),
    ("bell\x07 esc\x1b[31mred\x1b[0m del\x7f", "ASCII controls, ANSI terminal escape"),
    ("<lora:my_lora-v2:0.8> a cat <hypernet:foo:1>", "extra-network tag syntax (A1111 strips it before tokenizing)"),
    ("supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis", "very long words"),
    ("a" * 80, "one 80-letter word"),
    ("ﬁne ﬂower ﬀ ĳ ǅ", "Latin ligatures / digraphs (ftfy splits them)"),
    ("ＬＯＵＤ　ＮＯＩＳＥＳ １２３ ｃａｔ", "full-width Latin letters / digits / ideographic space"),
    ("ﾊﾝｸﾞﾙ ﾡ 한국어", "half-width Hangul letter, Hangul syllables"),
    ("ΟΔΟΣ ΣΟΦΟΣ σοφός", "Greek capitals with final sigma (lower-casing context)"),
    ("İstanbul ẞ Ǉ", "case mappings that change length"),
    ("e=mc² x½ ① ⅷ", "superscripts / fractions / circled digits (no NFKC in either path)"),
    ("— – … · • ™ © °", "dashes, ellipsis, symbols"),
    ("العربية עברית हिन्दी ไทย", "Arabic, Hebrew, Devanagari (combining marks), Thai"),
    ("a<|endoftext|>b <|startoftext|> <|ENDOFTEXT|>", "special-token text inside a prompt"),
    ("", "empty"),
    ("   \t\n ", "whitespace only"),
    (GOLDEN_PROMPT, "golden prompt, raw (A1111 tokenizes its emphasis fragments)"),
    ("lowres, bad anatomy", "golden negative prompt"),
]


def a1111_tokenize_factory(tok_dir):
    """Standalone A1111 (transformers 4.30.2 slow CLIPTokenizer + ftfy) path, for cross-checking."""
    import ftfy
    import regex as re
    with open(os.path.join(tok_dir, "vocab.json"), encoding="utf-8") as f:
        encoder = json.load(f)
    with open(os.path.join(tok_dir, "merges.txt"), encoding="utf-8") as f:
        merges = [tuple(m.split()) for m in f.read().strip().split("\n")[1:49152 - 256 - 2 + 1]]
    ranks = {m: i for i, m in enumerate(merges)}
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_enc = dict(zip(bs, map(chr, cs)))
    pat = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                     re.IGNORECASE)
    specials = {"<|startoftext|>": 49406, "<|endoftext|>": 49407}

    def bpe(token):
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == best[0] and word[i + 1] == best[1]:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = tuple(out)
        return word

    def normalize(text):
        return re.sub(r"\s+", " ", ftfy.fix_text(text)).strip().lower()

    def tokenize(text):
        ids = []
        # PreTrainedTokenizer.tokenize: exact special-token strings are split out first
        for part in re.split(r"(<\|startoftext\|>|<\|endoftext\|>)", text):
            if part in specials:
                ids.append(specials[part])
                continue
            if not part:
                continue
            for piece in pat.findall(normalize(part)):
                if piece in specials:  # the slow tokenizer's bpe cache maps these to themselves
                    ids.append(specials[piece])
                    continue
                ids += [encoder[t] for t in bpe("".join(byte_enc[b] for b in piece.encode("utf-8")))]
        return ids

    return tokenize, normalize


WORKER = r"""
import json, sys, types
which, tok_dir, t430 = sys.argv[1], sys.argv[2], sys.argv[3]
texts = json.load(sys.stdin)
if which == "430":
    sys.path.insert(0, t430)
    # transformers 4.30's import-time pin check (tokenizers<0.14 ...) would reject this venv;
    # the slow CLIPTokenizer needs none of those packages.
    sys.modules["transformers.dependency_versions_check"] = types.ModuleType("transformers.dependency_versions_check")
import transformers
from transformers import CLIPTokenizer
tok = CLIPTokenizer.from_pretrained(tok_dir)
assert transformers.__version__ == ("4.30.2" if which == "430" else transformers.__version__)
if which == "430":
    assert tok.fix_text is not None, "ftfy not importable: 4.30 would fall back to BasicTokenizer"
ids = tok(texts, truncation=False, add_special_tokens=False)["input_ids"]  # as A1111 calls it
print(json.dumps({"version": transformers.__version__, "class": type(tok).__module__ + "." + type(tok).__name__,
                  "ids": ids}))
"""


def run_worker(which, tok_dir, t430, texts):
    r = subprocess.run([sys.executable, "-c", WORKER, which, tok_dir, t430 or ""], input=json.dumps(texts),
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"tokenizer worker {which} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, help="clip-tokenizer dir made by REF/vocab.py")
    ap.add_argument("--transformers430", required=True,
                    help="the unpacked transformers-4.30.2 wheel (the dir that contains transformers/)")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    import ftfy
    texts = [t for t, _ in CASES]
    old = run_worker("430", args.tokenizer, args.transformers430, texts)
    new = run_worker("524", args.tokenizer, None, texts)
    tokenize, normalize = a1111_tokenize_factory(args.tokenizer)
    out, n_diff = [], 0
    for (text, note), a, b in zip(CASES, old["ids"], new["ids"]):
        mine = tokenize(text)
        if mine != a:
            sys.exit(f"standalone A1111 path disagrees with transformers 4.30.2 on {text!r}: {mine} vs {a}")
        n_diff += a != b
        out.append({"text": text, "ids": a, "ids_transformers524": b, "normalized": normalize(text),
                    "agree": a == b, "note": note})
        print(f"{'same' if a == b else 'DIFF'} {text!r:60.60} {len(a):3} / {len(b):3} tokens")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    doc = {"meta": {"ids": f"transformers {old['version']} {old['class']} (slow) with ftfy {ftfy.__version__}, "
                           "add_special_tokens=False: A1111 1.10's tokenizer",
                    "ids_transformers524": f"transformers {new['version']} {new['class']}, add_special_tokens=False "
                                           "(the oracle reference.py's tokenizer)",
                    "normalized": "whitespace_clean(ftfy.fix_text(text)).lower()",
                    "vocab": "clip-tokenizer from shared/ref/vocab.py (open_clip bpe_simple_vocab_16e6.txt.gz)",
                    "made_by": "tools/make_tokenizer_cases.py"},
           "cases": out}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, indent=1)  # \u escapes: invisible characters stay visible
        f.write("\n")
    print(f"wrote {len(out)} cases to {args.out}: {n_diff} where transformers {new['version']} differs from A1111")


if __name__ == "__main__":
    main()
