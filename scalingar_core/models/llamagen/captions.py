"""Caption cleaning as LlamaGen trains and samples with it (``docs/models.md``).

Upstream runs the DeepFloyd/PixArt caption cleaner twice on every prompt, at training and at inference,
so the T5 tokens a model was trained on depend on it: parentheses and brackets become spaces, "cube.a"
gains a space after the full stop, a caption with more than three hyphens or underscores has all of them
turned into spaces, "1920x1080" disappears. The rules below reproduce that cleaner's behaviour step by
step, in its order (the order matters: e.g. file names go before punctuation, mojibake is fixed in the
middle). ``ftfy`` and BeautifulSoup are the libraries upstream uses for two of the steps.
"""
from __future__ import annotations

import html
import re
import urllib.parse
import warnings

_TLDS = "com|co|ru|net|org|edu|gov|it"
_FILE_TYPES = "png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4"

# (pattern, replacement) applied in order; each group is one stage of the cleaner.
_BEFORE_HTML = [
    (r"<person>", "person"),
    # links: a scheme (or "www:") or something that looks like a domain, with its path
    (rf"\b((?:https?:(?:\/{{1,3}}|[a-zA-Z0-9%])|[a-zA-Z0-9.\-]+[.](?:{_TLDS})[\w/-]*\b\/?(?!@)))", ""),
    (rf"\b((?:www:(?:\/{{1,3}}|[a-zA-Z0-9%])|[a-zA-Z0-9.\-]+[.](?:{_TLDS})[\w/-]*\b\/?(?!@)))", ""),
]
_AFTER_HTML = [
    (r"@[\w\d]+\b", ""),  # @handles
    # CJK strokes, katakana extensions, enclosed letters, compatibility, ideographs (ext. A), hexagrams
    *[(f"[{lo}-{hi}]+", "") for lo, hi in [("\u31c0", "\u31ef"), ("\u31f0", "\u31ff"), ("\u3200", "\u32ff"),
                                           ("\u3300", "\u33ff"), ("\u3400", "\u4dbf"), ("\u4dc0", "\u4dff"),
                                           ("\u4e00", "\u9fff")]],
    # every kind of dash, runs included, becomes one "-"
    ("[\u002d\u058a\u05be\u1400\u1806\u2010-\u2015\u2e17\u2e1a\u2e3a\u2e3b\u2e40\u301c\u3030\u30a0\ufe31\ufe32"
     "\ufe58\ufe63\uff0d]+", "-"),
    ("[`\u00b4\u00ab\u00bb\u201c\u201d\u00a8]", '"'),  # backticks and typographic double quotes
    ("[\u2018\u2019]", "'"),
    (r"&quot;?", ""),
    (r"&amp", ""),
    (r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", " "),  # IP addresses
    (r"\d:\d\d\s+$", ""),  # a trailing "article id" like 1:23
    (r"\\n", " "),  # a literal backslash-n
    (r"#\d{1,3}\b", ""),
    (r"#\d{5,}\b", ""),
    (r"\b\d{6,}\b", ""),
    (rf"[\S]+\.(?:{_FILE_TYPES})", ""),  # file names
    (r"[\"']{2,}", '"'),
    (r"[\.]{2,}", " "),
    (r"[#®•©™&@·º½¾¿¡§~\)\(\]\[\}\{\|\\/\*]{1,}", " "),  # symbols and brackets become spaces
    (r"\s+\.\s+", " "),
]
_HYPHENS = re.compile(r"(?:\-|\_)")  # more than three of them: a slug like this-is-my-cat, split it
_AFTER_FIX = [
    # product codes: jc6640, jc6640vc, 6640vc231
    (r"\b[a-zA-Z]{1,3}\d{3,15}\b", ""),
    (r"\b[a-zA-Z]+\d+[a-zA-Z]+\b", ""),
    (r"\b\d+[a-zA-Z]+\d+\b", ""),
    # shop and web boilerplate
    (r"(worldwide\s+)?(free\s+)?shipping", ""),
    (r"(free\s)?download(\sfree)?", ""),
    (r"\bclick\b\s(?:for|on)\s\w+", ""),
    (rf"\b(?:{_FILE_TYPES})(\simage[s]?)?", ""),
    (r"\bpage\s+\d+\b", ""),
    (r"\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b", " "),  # mixed letter-digit ids
    (r"\b\d+\.?\d*[xх×]\d+\.?\d*\b", ""),  # sizes like 1920x1080 (latin x, cyrillic х, ×)
    (r"\b\s+\:\s+", ": "),
    (r"(\D[,\./])\b", r"\1 "),  # a space after , . / glued to the next word ("cube.a" -> "cube. a")
    (r"\s+", " "),
    (r"^[\"']([\w\W]+)[\"']$", r"\1"),  # one pair of surrounding quotes
    (r"^['\_,\-\:;]", ""),
    (r"['\_,\-\:\-\+]$", ""),
    (r"^\.\S+$", ""),
]
_COMPILED = {name: [(re.compile(p), r) for p, r in rules]
             for name, rules in (("before", _BEFORE_HTML), ("after", _AFTER_HTML), ("fixed", _AFTER_FIX))}


def _apply(stage: str, text: str) -> str:
    for pattern, replacement in _COMPILED[stage]:
        text = pattern.sub(replacement, text)
    return text


def _libraries():
    try:
        import ftfy
        from bs4 import BeautifulSoup
    except ImportError as exc:
        raise ImportError(f"caption cleaning needs {exc.name!r} (LlamaGen's cleaner uses ftfy and BeautifulSoup): "
                          "pip install -r requirements.txt") from exc
    return ftfy, BeautifulSoup


def clean_caption_once(text: str) -> str:
    """One pass of upstream's caption cleaner."""
    ftfy, BeautifulSoup = _libraries()
    text = urllib.parse.unquote_plus(str(text)).strip().lower()
    text = _apply("before", text)
    with warnings.catch_warnings():  # a prompt that looks like a URL or a file name is still a prompt
        warnings.simplefilter("ignore")
        text = BeautifulSoup(text, features="html.parser").text  # drop HTML tags
    text = _apply("after", text)
    if len(_HYPHENS.findall(text)) > 3:
        text = _HYPHENS.sub(" ", text)
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()  # mojibake, then HTML entities
    return _apply("fixed", text).strip()


def clean_prompt(text: str) -> str:
    """A prompt as LlamaGen's T5 sees it: upstream's caption cleaner, applied twice (as upstream does)."""
    return clean_caption_once(clean_caption_once(text))
