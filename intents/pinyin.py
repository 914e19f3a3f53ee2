"""Messages typed in pinyin, read back as the Chinese words of the training data.

Some customers type pinyin ("dianfei duoshao qian yi du a", "wo yao ban guo hu"). The
classifier's features are Chinese words and character n-grams, so a message in pinyin is read
back into Chinese first: its syllables are matched, longest run first, against the pinyin of
every word and phrase (up to four characters) of the training data, and each match takes the
spelling the data uses most often. The reader is fitted with the model, so any word the data
holds can be reached in pinyin, not only the words of a hand-kept list.
"""

from __future__ import annotations

import functools
import re
from collections import Counter, defaultdict
from typing import Iterable

_HAN_RUN = re.compile("[\u4e00-\u9fff]+")
_LATIN_RUN = re.compile(r"[a-z]+(?: +[a-z]+)*")
_LATIN_WORD = re.compile(r"[a-z]+")

_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x",
             "r", "z", "c", "s", "y", "w", "")
_FINALS = ("a", "o", "e", "i", "u", "v", "ai", "ei", "ui", "ao", "ou", "iu", "ie", "ve", "ue", "er",
           "an", "en", "in", "un", "vn", "ang", "eng", "ing", "ong", "ia", "iao", "ian", "iang",
           "iong", "ua", "uo", "uai", "uan", "uang")
SYLLABLES = frozenset(i + f for i in _INITIALS for f in _FINALS) - {"i", "u", "v"}
LONGEST_PHRASE = 4  # characters; longer runs are read as several phrases


@functools.lru_cache(maxsize=8192)  # the same words come back in every message
def syllables(word: str) -> tuple[str, ...] | None:
    """``word`` split into the fewest pinyin syllables ("dianfei" -> dian, fei), or None when
    it is not pinyin. Of equally short splits the one with the longer first syllable wins
    ("xian" is one syllable, "fangan" is fang + an)."""
    best: list[tuple[str, ...] | None] = [()] + [None] * len(word)
    for end in range(1, len(word) + 1):
        for start in range(max(0, end - 6), end):
            head = best[start]
            if head is not None and word[start:end] in SYLLABLES:
                cand = head + (word[start:end],)
                if best[end] is None or len(cand) < len(best[end]):
                    best[end] = cand
    return best[-1]


class PinyinReader:
    """Pinyin syllables -> the training data's most frequent spelling of them."""

    def __init__(self) -> None:
        self.words: dict[str, str] = {}  # "dian fei" -> "电费"

    def fit(self, texts: Iterable[str]) -> "PinyinReader":
        from pypinyin import lazy_pinyin  # its dictionaries load only when a model is trained

        seen: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for text in texts:
            for run in _HAN_RUN.findall(text):
                sounds = lazy_pinyin(run)
                if len(sounds) != len(run):
                    continue
                for i in range(len(run)):
                    for n in range(1, min(LONGEST_PHRASE, len(run) - i) + 1):
                        seen[" ".join(sounds[i:i + n])][run[i:i + n]] += 1
        # a phrase seen once is as likely a chance neighbourhood of words as a phrase
        self.words = {key: spellings.most_common(1)[0][0] for key, spellings in seen.items()
                      if " " not in key or spellings.total() > 1}
        return self

    def read(self, text: str) -> str:
        """``text`` with every run of pinyin words read as Chinese (other words unchanged)."""
        return _LATIN_RUN.sub(self._read_run, text)

    def _read_run(self, match: re.Match[str]) -> str:
        words = match.group(0).split()
        split = [syllables(w) for w in words]
        if not all(split):
            return " ".join(self._read_words(words, split))
        return self._read_sounds([s for parts in split for s in parts])  # type: ignore[union-attr]

    def _read_words(self, words: list[str], split: list) -> list[str]:
        """A run mixing pinyin and other words: each stretch of pinyin words read alone."""
        out: list[str] = []
        sounds: list[str] = []
        for word, parts in zip(words, split):
            if parts:
                sounds += parts
                continue
            if sounds:
                out.append(self._read_sounds(sounds))
                sounds = []
            out.append(word)
        if sounds:
            out.append(self._read_sounds(sounds))
        return out

    def _read_sounds(self, sounds: list[str]) -> str:
        out: list[str] = []
        i = 0
        while i < len(sounds):
            for n in range(min(LONGEST_PHRASE, len(sounds) - i), 0, -1):
                spelling = self.words.get(" ".join(sounds[i:i + n]))
                if spelling is not None:
                    out.append(spelling)
                    i += n
                    break
            else:  # a syllable the data never spells: kept as typed, between spaces
                out.append(f" {sounds[i]} ")
                i += 1
        return "".join(out).strip()
