"""Tokenisation and sparse TF-IDF featurisation (word 1–2-grams + char 1–3-grams).

Implemented directly (instead of sklearn's TfidfVectorizer at inference) because a single
message must be featurised in well under a millisecond; the maths is identical
(sublinear tf, smoothed idf, per-block L2 normalisation).
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import re
import threading
from collections import Counter
from typing import Iterable, Sequence

import jieba
import numpy as np
from jieba import finalseg

from .lexicon import canonical
from .numbers import digits_view
from .pinyin import PinyinReader

DOMAIN_WORDS = [
    "户号", "峰谷", "峰谷电", "峰谷电价", "业扩", "业扩报装", "过户", "更名", "销户", "增容", "减容",
    "新装", "报装", "电费", "欠费", "缴费", "交费", "充电桩", "光伏", "并网", "分布式光伏",
    "阶梯电价", "阶梯", "电价", "停电", "来电", "复电", "跳闸", "漏电保护器", "空开", "电表",
    "电能表", "窃电", "偷电", "工单", "人工客服", "转人工", "网上国网", "国网", "供电所",
    "营业厅", "电子发票", "增值税发票", "专票", "普票", "用电量", "度数", "峰电", "谷电",
    "预存", "余额", "违约金", "滞纳金", "退费", "重复扣费", "扣了两次", "抄表", "计量",
    "变压器", "电线杆", "掉线", "冒火", "打火", "短路", "95598", "计划停电", "检修停电",
    "限电", "拉闸", "绑定", "解绑", "退订", "订阅", "推送", "一户一表", "合表", "分表",
]

# Private-use placeholders: entity values are replaced by one symbol each, so "3101234567"
# and "3209876543" look identical to the classifier (generalises across numbers).
PLACEHOLDERS = {"account_number": "\ue000", "phone_number": "\ue001",
                "work_order_id": "\ue002", "amount": "\ue003", "address": "\ue007",
                "district": "\ue008"}
# An address says "where", never "what": masked, "<address>停电了" is an outage report and a
# bare "<address>" an answer to a question (inform), however few training examples carry one.
# So does a district ("松江区停电了", "Jing'an"): every district reads alike; an address that
# contains one is masked as the address (the longer span).
# Other digit runs by shape: a 4-digit run is nearly always a phone tail, an ID suffix, a
# year or a verification code (the reply to "last 4 digits of your phone?"), a 5–9-digit run
# some other long number.  Runs of 8s ("88", "886", "888") are chat slang for bye-bye and
# keep their own symbol; everything else collapses to "0" (3号楼 ≈ 12号楼).
FOUR_DIGITS = "\ue004"
LONG_DIGITS = "\ue005"
BYE_DIGITS = "\ue006"
_DIGITS_RE = re.compile(r"\d+")
# Char n-gram sizes.  1–3 beat 1–4 and 1–5 on 2x5-fold CV of the training data and on the
# blind set (4-grams mostly memorise whole training phrases) and are cheaper.
CHAR_SIZES = (1, 2, 3)
_BYE_RE = re.compile(r"8{2,3}6?")
_SLANG_RE = re.compile(r"6{3,}")  # "666" = well done (chat slang, not a number)


def _digit_symbol(m: re.Match[str]) -> str:
    run = m.group(0)
    if _BYE_RE.fullmatch(run):
        return f" {BYE_DIGITS} "
    if _SLANG_RE.fullmatch(run):
        return " 666 "
    if len(run) == 4:
        return f" {FOUR_DIGITS} "
    if len(run) >= 5:
        return f" {LONG_DIGITS} "
    return "0"
_SPACE_RE = re.compile(r"\s+")

logging.getLogger("jieba").setLevel(logging.WARNING)
jieba.setLogLevel(logging.WARNING)


class _Hmm:
    """``jieba.finalseg.cut``, jieba's HMM for runs of characters its dictionary lacks.

    jieba's ``viterbi`` keeps a dict of whole paths per state and, for every character and
    state, builds a list of (probability, previous state) tuples to take the ``max`` of.
    With four states (B/M/E/S: begin, middle, end of a word, single) and two possible
    predecessors each, the recurrence is written out here on plain floats with
    back-pointers.  The float expression is jieba's, ``(V[prev] + trans) + emit``, and so
    is the tie-break of the tuple ``max``: on equal probability the later letter wins.
    """

    def __init__(self) -> None:
        low, start, trans = finalseg.MIN_FLOAT, finalseg.start_P, finalseg.trans_P
        self._low = low
        self._start = tuple(start[y] for y in "BMES")
        self._emit = tuple(finalseg.emit_P[y] for y in "BMES")
        t = {(a, b): trans[a].get(b, low) for a in "BMES" for b in "BMES"}
        self._t = (t["E", "B"], t["S", "B"], t["M", "M"], t["B", "M"],
                   t["S", "S"], t["E", "S"], t["B", "E"], t["M", "E"])

    def _tags(self, obs: str) -> list[str]:
        low = self._low
        eB, eM, eE, eS = self._emit
        tEB, tSB, tMM, tBM, tSS, tES, tBE, tME = self._t
        sB, sM, sE, sS = self._start
        c = obs[0]
        vB, vM = sB + eB.get(c, low), sM + eM.get(c, low)
        vE, vS = sE + eE.get(c, low), sS + eS.get(c, low)
        back: list[tuple[str, str, str, str]] = []
        for c in obs[1:]:
            em = eB.get(c, low)  # B follows E or S
            a, b = vE + tEB + em, vS + tSB + em
            nB, pB = (a, "E") if a > b else (b, "S")
            em = eM.get(c, low)  # M follows M or B
            a, b = vM + tMM + em, vB + tBM + em
            nM, pM = (b, "B") if b > a else (a, "M")
            em = eS.get(c, low)  # S follows S or E
            a, b = vS + tSS + em, vE + tES + em
            nS, pS = (b, "E") if b > a else (a, "S")
            em = eE.get(c, low)  # E follows B or M
            a, b = vB + tBE + em, vM + tME + em
            nE, pE = (a, "B") if a > b else (b, "M")
            back.append((pB, pM, pE, pS))
            vB, vM, vE, vS = nB, nM, nE, nS
        state = "E" if vE > vS else "S"  # a sentence ends with E or S
        tags = [state]
        for ptr in reversed(back):
            state = ptr["BMES".index(state)]
            tags.append(state)
        tags.reverse()
        return tags

    def _words(self, blk: str, out: list[str]) -> None:
        """Words from the B/M/E/S tags, as ``finalseg.__cut`` cuts them."""
        begin = nexti = 0
        for i, pos in enumerate(self._tags(blk)):
            if pos == "B":
                begin = i
            elif pos == "E":
                out.append(blk[begin : i + 1])
                nexti = i + 1
            elif pos == "S":
                out.append(blk[i])
                nexti = i + 1
        if nexti < len(blk):
            out.append(blk[nexti:])

    def cut(self, sentence: str, out: list[str]) -> None:
        han, skip, forced = finalseg.re_han, finalseg.re_skip, finalseg.Force_Split_Words
        for blk in han.split(sentence):
            if han.match(blk):
                words: list[str] = []
                self._words(blk, words)
                for w in words:
                    if w in forced:
                        out.extend(w)
                    else:
                        out.append(w)
            else:
                out.extend(x for x in skip.split(blk) if x)


class _Segmenter:
    """jieba's default mode, ``jieba.Tokenizer.lcut(text, HMM=True)``: same words, cheaper.

    Per block of Han/alphanumeric text jieba builds a dict of word ends (the DAG), then
    for every position takes ``max`` over a generator of (log P(word) + best rest, end)
    tuples, recomputing ``log(freq)`` each time; that is most of a message's tokenisation
    cost.  This runs the same dynamic programme in one backward pass with memoised word
    log-probabilities (the same float expression, hence the same route and tie-breaks:
    equal scores go to the longer word, as in the tuple ``max``) and gives runs of unknown
    single characters to the HMM (``_Hmm``, jieba's ``finalseg.cut``), as jieba does.
    Mirrors jieba 0.42 (``Tokenizer.cut``/``__cut_DAG``/``get_DAG``/``calc``); ``Tokenizer``
    only uses it on that version.  The memo is bounded; the dictionary must not change after.
    """

    MEMO_LIMIT = 200_000

    def __init__(self, jt: jieba.Tokenizer) -> None:
        self._freq: dict[str, int] = jt.FREQ
        self._logtotal = math.log(jt.total)
        self._logp: dict[str, float] = {}
        self._hmm = _Hmm()

    def _learn(self, word: str) -> float:
        lp = math.log(self._freq.get(word) or 1) - self._logtotal
        if len(self._logp) < self.MEMO_LIMIT:
            self._logp[word] = lp
        return lp

    def _ends(self, s: str) -> list[int]:
        """For each start position, the end of the word jieba's best route takes there."""
        freq, logp = self._freq, self._logp
        n = len(s)
        score = [0.0] * (n + 1)
        ends = [0] * n
        for k in range(n - 1, -1, -1):
            best, end = None, k
            i, frag = k, s[k]
            f = freq.get(frag)
            while f is not None:  # frag runs over the dictionary's prefixes starting at k
                if f:  # a word, not only a prefix of one
                    lp = logp.get(frag)
                    sc = (self._learn(frag) if lp is None else lp) + score[i + 1]
                    if best is None or sc >= best:
                        best, end = sc, i
                i += 1
                if i == n:
                    break
                frag = s[k : i + 1]
                f = freq.get(frag)
            if best is None:  # no word starts here: the single character, frequency 1
                lp = logp.get(s[k])
                best = (self._learn(s[k]) if lp is None else lp) + score[k + 1]
            score[k], ends[k] = best, end
        return ends

    def _flush(self, buf: str, out: list[str]) -> None:
        """A run of single characters: kept, split, or segmented by the HMM (as jieba)."""
        if len(buf) == 1:
            out.append(buf)
        elif not self._freq.get(buf):
            self._hmm.cut(buf, out)
        else:
            out.extend(buf)

    def _cut_block(self, s: str, out: list[str]) -> None:
        ends = self._ends(s)
        x, n, buf = 0, len(s), ""
        while x < n:
            y = ends[x] + 1
            if y - x == 1:
                buf += s[x]
            else:
                if buf:
                    self._flush(buf, out)
                    buf = ""
                out.append(s[x:y])
            x = y
        if buf:
            self._flush(buf, out)

    def cut(self, text: str) -> list[str]:
        out: list[str] = []
        han, skip = jieba.re_han_default, jieba.re_skip_default
        for blk in han.split(text):
            if not blk:
                continue
            if han.match(blk):
                self._cut_block(blk, out)
            else:
                for x in skip.split(blk):
                    if skip.match(x):
                        out.append(x)
                    else:
                        out.extend(x)  # other characters one by one
        return out


class Tokenizer:
    """A private jieba tokenizer with the utility-domain vocabulary (lazy, thread-safe init)."""

    def __init__(self, extra_words: Iterable[str] = ()) -> None:
        self._jieba = jieba.Tokenizer()
        self._lock = threading.Lock()
        self._ready = False
        self._words = list(DOMAIN_WORDS) + [w for w in extra_words if w]
        self._segmenter: _Segmenter | None = None
        self.pinyin: PinyinReader | None = None  # fitted on the training texts by ``learn``

    def learn(self, texts: Iterable[str]) -> None:
        """Learn the training data's words as they are spelt in pinyin."""
        self.pinyin = PinyinReader().fit(texts)

    def _init(self) -> None:
        with self._lock:
            if not self._ready:
                self._jieba.initialize()
                for w in self._words:
                    self._jieba.add_word(w, freq=20000)
                if getattr(jieba, "__version__", "").startswith("0.42."):
                    self._segmenter = _Segmenter(self._jieba)
                self._ready = True

    def tokens(self, text: str) -> list[str]:
        if not self._ready:
            self._init()
        if self._segmenter is not None:
            return [t for t in self._segmenter.cut(text) if t.strip()]
        return self.jieba_tokens(text)

    def jieba_tokens(self, text: str) -> list[str]:
        """``tokens`` computed by jieba itself (the reference for ``_Segmenter``)."""
        if not self._ready:
            self._init()
        return [t for t in self._jieba.lcut(text, HMM=True) if t.strip()]

    def __getstate__(self) -> dict:
        return {"words": self._words, "pinyin": self.pinyin}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["words"])
        self.pinyin = state.get("pinyin")


def mask_entities(text: str, entities: Sequence[dict]) -> str:
    """Replace number-like entity spans by placeholders; collapse other digit runs to '0'.

    Digits spelled out in Chinese ("八零零零") or written full-width count as digits
    (``digits_view``, length-preserving, so the entities' offsets stay valid)."""
    text = digits_view(text)
    out, pos = [], 0
    for e in sorted(entities, key=lambda e: (e["start"], e["start"] - e["end"])):  # longest first
        ph = PLACEHOLDERS.get(e["entity"])
        if ph is None or e["start"] < pos:
            continue
        out.append(text[pos : e["start"]])
        out.append(f" {ph} ")
        pos = e["end"]
    out.append(text[pos:])
    masked = "".join(out)
    return _DIGITS_RE.sub(_digit_symbol_in(masked), masked)


# "电费88" / "余额还有88" / "88元": a sum, not bye-bye — 88 is slang for bye only after none of
# these (skipping spaces)
_SUM_BEFORE = re.compile(r"[费额是有欠交付充花计共了到约号码第尾数度钱值价为剩余差付账单]\s*$")


def _digit_symbol_in(text: str):
    """``_digit_symbol`` with the context: a run of 8s right after a word of sums is a number."""
    def sym(m: re.Match[str]) -> str:
        if _BYE_RE.fullmatch(m.group(0)) and _SUM_BEFORE.search(text, 0, m.start()):
            return f" {FOUR_DIGITS} " if len(m.group(0)) == 4 else "0"
        return _digit_symbol(m)
    return sym


# Polarity cues for the notification intents: "stop/cancel/不想再收" vs "turn on/开通/接收" are
# the only thing telling subscribe from unsubscribe, and new wordings of them are endless.
_OFF_CUE = re.compile(r"取消|关闭|关掉|关了|停止|停发|退订|退定|不要|不想|不需要|不用|别再|别发|不再|屏蔽|免打扰"
                      r"|\b(?:stop|cancel|disable|unsubscribe|opt out|no more|no longer|don'?t|"
                      r"turn off|mute|deactivate)\b")
_NOTICE = re.compile(r"通知|提醒|推送|短信|消息|订阅|退订|预警|发给我|发我|告诉我"
                     r"|alert|notif|message|sms|remind|text|subscri|email me")
_ON_CUE = re.compile(r"开通|开启|打开|订阅|接收|恢复|想收到|通知我|提醒我|发给我|告诉我"
                     r"|\b(?:enable|turn on|turn \w+ on|activate|subscribe|sign me up|notify me|"
                     r"send me|alert me|remind me)\b")


# "订阅停电通知，别再像昨天那样突然停了", "sign me up, I don't want another surprise outage": a
# wish that the *power* stop going off, not the messages — blanked before the off cue is looked
# for, so it cannot flip a subscription into an unsubscription.  Only read when both a notice
# word and an off cue are present (rare), so it costs nothing on most messages.
_OUTAGE_WISH = re.compile(
    r"(?:别再|不要再|不想再|再也别|再也不要|别|不要)(?:像|跟|和)?[^，,。.!！?？发推通提短信消息订收]{0,8}?(?:那样|一样)?"
    r"(?:突然|无故|莫名其妙|莫名|随便|动不动)?(?:地)?(?:停电|断电|停了|断了|停|断|没电)"
    r"(?!电?(?:通知|提醒|预警|短信|信息|消息|推送))|"
    r"\b(?:so|that) (?:i|we) (?:don'?t|do not|won'?t|will not) miss\b|别错过|免得错过|以免错过|"
    r"\b(?:don'?t|do not) want (?:another|more|any more|a repeat of)\b[^.,!?]{0,30}"
    r"\b(?:outage|power cut|blackout|cut)s?\b|\bno more (?:surprise |sudden |unannounced )?"
    r"(?:outages|power cuts|blackouts|cuts)\b",
    re.I,
)


def _polarity_cue(text: str) -> str | None:
    """The notification-polarity feature of a text, if it talks about notifications."""
    if _NOTICE.search(text):
        if _OFF_CUE.search(text) and _OFF_CUE.search(_OUTAGE_WISH.sub(" ", text)):
            return "cue:off"
        if _ON_CUE.search(text):
            return "cue:on"
    return None


def analyze(text: str, tokenizer: Tokenizer) -> tuple[list[str], list[str]]:
    """Return (word features, char features) of an already normalised, masked text.

    This defines the features (training fits the vocabularies on its output);
    ``InferenceFeaturizer`` computes the same vector faster for a single message.
    """
    text = canonical(text, tokenizer.pinyin)  # known slips as the word, pinyin as Chinese
    toks = tokenizer.tokens(text)
    words = ["w:" + t for t in toks]
    words += ["b:" + a + "|" + b for a, b in zip(toks, toks[1:])]
    cue = _polarity_cue(text)
    if cue is not None:
        words.append(cue)
    compact = _SPACE_RE.sub(" ", text).strip()
    chars = []
    n = len(compact)
    for size in CHAR_SIZES:
        for i in range(n - size + 1):
            g = compact[i : i + size]
            if g.strip() and (size == 1 or " " not in g.strip() or size >= 3):
                chars.append(g)
    if not chars and not words:
        chars = ["<empty>"]
    return words, chars


class Block:
    """One TF-IDF feature block (vocabulary + idf), fitted on the training corpus."""

    def __init__(self, offset: int = 0) -> None:
        self.vocab: dict[str, int] = {}
        self.idf: np.ndarray = np.zeros(0)
        self.offset = offset

    def fit(self, docs: list[list[str]], min_df: int = 1) -> None:
        df: Counter[str] = Counter()
        for d in docs:
            df.update(set(d))
        feats = sorted(f for f, c in df.items() if c >= min_df)
        self.vocab = {f: i for i, f in enumerate(feats)}
        n = len(docs)
        self.idf = np.array([math.log((1 + n) / (1 + df[f])) + 1.0 for f in feats])

    def vector(self, doc: list[str]) -> tuple[list[int], list[float]]:
        counts: Counter[int] = Counter()
        for f in doc:
            i = self.vocab.get(f)
            if i is not None:
                counts[i] += 1
        if not counts:
            return [], []
        idx = list(counts)
        vals = [(1.0 + math.log(counts[i])) * self.idf[i] for i in idx]
        norm = math.sqrt(sum(v * v for v in vals)) or 1.0
        return [i + self.offset for i in idx], [v / norm for v in vals]


class Featurizer:
    """Word block + char block, each L2-normalised, concatenated."""

    def __init__(self, char_weight: float = 1.0) -> None:
        self.words = Block()
        self.chars = Block()
        self.char_weight = char_weight

    @property
    def dim(self) -> int:
        return len(self.words.vocab) + len(self.chars.vocab)

    def fit(self, analyzed: list[tuple[list[str], list[str]]]) -> None:
        self.words.fit([a[0] for a in analyzed])
        self.chars.fit([a[1] for a in analyzed])
        self.chars.offset = len(self.words.vocab)

    def vector(self, analyzed: tuple[list[str], list[str]]) -> tuple[list[int], list[float]]:
        wi, wv = self.words.vector(analyzed[0])
        ci, cv = self.chars.vector(analyzed[1])
        return wi + ci, wv + [v * self.char_weight for v in cv]

    def matrix(self, analyzed: list[tuple[list[str], list[str]]]):
        import scipy.sparse as sp  # training only

        rows, cols, vals = [], [], []
        for r, a in enumerate(analyzed):
            idx, v = self.vector(a)
            rows.extend([r] * len(idx))
            cols.extend(idx)
            vals.extend(v)
        return sp.csr_matrix((vals, (rows, cols)), shape=(len(analyzed), self.dim))


def _sum_of_squares(vals: list[float]) -> float:
    """Plain left-to-right sum of squares, as ``Block.vector`` computes it.

    Not ``sum()``: from Python 3.12 on, ``sum`` of floats is compensated and could differ in
    the last bit from the plain additions ``Block.vector`` performs on numpy scalars.
    """
    return functools.reduce(operator.add, map(operator.mul, vals, vals), 0.0)


def _known(keys: Iterable[str], vocab: dict[str, int]) -> list[int]:
    """Vocabulary indices of the keys that are in the vocabulary, in order."""
    return [i for i in map(vocab.get, keys) if i is not None]


def _tfidf(hits: list[int], idf: list[float],
           scale: float | None = None) -> tuple[list[int], list[float]]:
    """``Block.vector`` of a document given its features' (global) indices, in order.

    Same indices in the same (first-occurrence) order and the same float operations,
    including (1 + log 1) * idf == idf for the usual case of a feature seen once.
    """
    if not hits:
        return [], []
    distinct = dict.fromkeys(hits)
    if len(distinct) == len(hits):  # every feature once: tf = 1, no counting needed
        vals = [idf[i] for i in distinct]
    else:
        log = math.log
        vals = [idf[i] if c == 1 else (1.0 + log(c)) * idf[i] for i, c in Counter(hits).items()]
    norm = math.sqrt(_sum_of_squares(vals)) or 1.0
    if scale is None:
        vals = [v / norm for v in vals]
    else:
        vals = [v / norm * scale for v in vals]
    return list(distinct), vals


class InferenceFeaturizer:
    """``Featurizer.vector(analyze(text, tokenizer))`` for one message, without the detour.

    ``analyze`` materialises every feature string ("w:电费", "b:查|电费", each char n-gram)
    because training needs them to fit the vocabularies.  At inference only vocabulary
    hits matter, so this looks tokens and n-grams up directly (word vocabulary split by
    prefix, idf as Python floats) and builds no intermediate lists of prefixed strings.
    The features, their order and the float operations are the same as in ``analyze`` and
    ``Block.vector``, so the vector is bit-identical (tests/nlu/test_nlu_fast_path.py checks).
    Derived from a fitted ``Featurizer`` at load time; never pickled.
    """

    def __init__(self, featurizer: Featurizer, tokenizer: Tokenizer) -> None:
        words, chars = featurizer.words, featurizer.chars
        self._tokenizer = tokenizer
        # Vocabularies map straight to the concatenated vector's index (block offset added)
        # and ``_idf`` is indexed the same way, so no per-feature offset arithmetic remains.
        w = {f: i + words.offset for f, i in words.vocab.items()}
        self._unigrams = {f[2:]: i for f, i in w.items() if f.startswith("w:")}
        self._bigrams = {f[2:]: i for f, i in w.items() if f.startswith("b:")}
        self._cues = {f: i for f, i in w.items() if f.startswith("cue:")}
        self._char_vocab = {f: i + chars.offset for f, i in chars.vocab.items()}
        idf = [0.0] * featurizer.dim
        for block in (words, chars):
            for f, i in block.vocab.items():
                idf[i + block.offset] = float(block.idf[i])
        self._idf = idf
        self._char_weight = featurizer.char_weight

    def _word_hits(self, text: str) -> tuple[list[int], bool]:
        """(vocabulary indices of the word features, in ``analyze``'s order; whether there
        was any word feature at all, in vocabulary or not)."""
        toks = self._tokenizer.tokens(text)
        hits = _known(toks, self._unigrams)
        if len(toks) > 1:
            hits += _known([a + "|" + b for a, b in zip(toks, toks[1:])], self._bigrams)
        cue = _polarity_cue(text)
        if cue is not None and cue in self._cues:
            hits.append(self._cues[cue])
        return hits, bool(toks) or cue is not None

    def _char_grams(self, text: str) -> list[str]:
        """The char n-grams ``analyze`` keeps, in its order.

        After whitespace runs became one space and the ends were stripped, the only
        whitespace left is single inner spaces, so ``analyze``'s filter reduces to: drop
        the 1-gram " ", keep every 2- and 3-gram (none is blank; a 2-gram's space is at an
        end and stripped before its "no inner space" test).
        """
        compact = _SPACE_RE.sub(" ", text).strip()
        n = len(compact)
        grams = list(compact.replace(" ", ""))
        grams += [compact[i : i + 2] for i in range(n - 1)]
        grams += [compact[i : i + 3] for i in range(n - 2)]
        return grams

    def vector(self, text: str) -> tuple[list[int], list[float]]:
        text = canonical(text, self._tokenizer.pinyin)  # as ``analyze``
        word_hits, any_word = self._word_hits(text)
        grams = self._char_grams(text)
        if not grams and not any_word:
            grams = ["<empty>"]
        wi, wv = _tfidf(word_hits, self._idf)
        ci, cv = _tfidf(_known(grams, self._char_vocab), self._idf, self._char_weight)
        return wi + ci, wv + cv
