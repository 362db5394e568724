"""Text for synthetic lines, in English or Chinese, restricted to a charset.

``TextSource`` draws one string of a given *kind*:

- ``words``: 1-4 dictionary words (wordfreq for English, jieba's dictionary for Chinese);
- ``pattern``: the structured strings of invoices and IDs (codes, dates, amounts, phones);
- ``entity``: a name, address, company, job, city, URL, e-mail, IBAN, card or plate
  (``faker``'s en_US / zh_CN locales);
- ``sentence``: running text with punctuation;
- ``document``: a document line of a target length (up to ~110 characters) built from
  sentences, key-value fields ("Invoice No: ..."), table rows and entities;
- ``scene``: a sign or label: 1-3 words or a short entity, often capitalized.

Everything random comes from the ``rng`` passed in, so a line is a pure function of
its seed (faker is reseeded from it for each string).
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from pathlib import Path

import numpy as np

from distill.core.charset import Charset

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
KINDS = ("words", "pattern", "entity", "sentence", "document", "scene")
FIELDS_EN = (
    "Invoice No", "Date", "Due Date", "Order", "Customer", "Account", "Ref", "Tel", "Fax",
    "Email", "Address", "Total", "Subtotal", "Tax", "GST", "Amount Due", "Balance",
    "Cashier", "Table", "Qty", "Item", "Description", "Unit Price", "Payment", "Change",
    "Name", "Date of Birth", "ID No", "Expiry", "Nationality", "Page",
)  # fmt: skip
FIELDS_ZH = (
    "发票号码", "开票日期", "金额", "税额", "合计", "购买方", "销售方", "地址", "电话",
    "名称", "数量", "单价", "备注", "收款人", "复核", "开户行", "账号", "姓名", "性别",
    "民族", "出生", "住址", "公民身份号码", "签发机关", "有效期限", "订单号", "日期",
)  # fmt: skip
_FAKER_LOCALE = {"en": "en_US", "zh": "zh_CN"}


@lru_cache(maxsize=4)
def _english_words(n: int) -> tuple[str, ...]:
    from wordfreq import top_n_list

    return tuple(top_n_list("en", n))


@lru_cache(maxsize=2)
def _chinese_words() -> tuple[str, ...]:
    import jieba

    path = Path(jieba.__file__).parent / "dict.txt"
    words = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            w = line.split(" ", 1)[0]
            if 1 <= len(w) <= 4:
                words.append(w)
    return tuple(words)


@lru_cache(maxsize=2)
def _faker(lang: str):
    from faker import Faker

    return Faker(_FAKER_LOCALE[lang])


class TextSource:
    """Draws text lines of a kind in a language, within the characters of a charset."""

    def __init__(
        self,
        charset: Charset,
        lang: str = "en",
        vocab_size: int = 30000,
        max_chars: int = 24,
        pattern_ratio: float = 0.35,
    ):
        if lang not in ("en", "zh"):
            raise ValueError(f"synthetic text language must be 'en' or 'zh', got {lang!r}")
        self.charset, self.lang = charset, lang
        self.max_chars, self.pattern_ratio = max_chars, pattern_ratio
        words = _english_words(vocab_size) if lang == "en" else _chinese_words()
        self.words = [w for w in words if not charset.unknown(w)]
        if lang == "en":
            # wordfreq is lower-case; keep the casing variants the charset allows
            self.words = [w for w in self.words if not charset.unknown(w.upper() + w.title())]
        if not self.words:
            raise ValueError(
                f"no {lang} dictionary word fits charset {charset.name!r}; "
                "use a charset with letters or a pattern-only source"
            )
        self.letters = "".join(c for c in string.ascii_letters if c in charset) or None
        self.sep = " " if lang == "en" else ""

    # ------------------------------------------------------------ pieces

    def _word(self, rng) -> str:
        return self.words[rng.integers(len(self.words))]

    def _pattern(self, rng: np.random.Generator) -> str:
        """Structured strings seen on invoices, receipts and IDs."""
        d = lambda k: "".join(str(x) for x in rng.integers(0, 10, k))  # noqa: E731
        up = lambda k: "".join(rng.choice(list(string.ascii_uppercase), k))  # noqa: E731
        word = lambda: self._word(rng)  # noqa: E731
        y, m, day = rng.integers(1970, 2036), rng.integers(1, 13), rng.integers(1, 29)
        amount = f"{rng.integers(0, 100000):,}.{d(2)}"
        choices = [
            lambda: f"{up(rng.integers(2, 4))}-{y}-{d(rng.integers(3, 6))}",
            lambda: f"{up(1)}{d(rng.integers(5, 9))}",
            lambda: f"{y}-{m:02d}-{day:02d}",
            lambda: f"{day:02d}/{m:02d}/{y}",
            lambda: f"{MONTHS[m - 1]} {day}, {y}",
            lambda: f"{d(2)}:{d(2)}" if rng.random() < 0.5 else f"{day:02d}.{m:02d}.{y % 100:02d}",
            lambda: str(rng.choice(["$", "USD ", "EUR ", "-$", "Total: $", "Amount "])) + amount,
            lambda: f"{rng.integers(1, 100)}.{d(1)}%",
            lambda: f"+{rng.integers(1, 99)} ({d(3)}) {d(3)}-{d(4)}",
            lambda: f"{d(3)}-{d(3)}-{d(4)}",
            lambda: f"{word()}.{word()}@{word()}.{rng.choice(['com', 'org', 'net', 'io'])}",
            lambda: f"{word().title()}: {d(rng.integers(1, 7))}",
            lambda: f"No. {d(rng.integers(3, 8))}",
            lambda: f"({word()}) {word()}; {word()}!",
            lambda: d(rng.integers(1, 12)),
        ]
        if self.lang == "zh":
            choices += [
                lambda: f"{y}年{m}月{day}日",
                lambda: f"金额：{amount}元",
                lambda: f"￥{amount}",
                lambda: f"电话：1{d(2)}-{d(4)}-{d(4)}",
                lambda: f"第{rng.integers(1, 100)}号",
            ]
        return choices[rng.integers(len(choices))]()

    def _entity(self, rng: np.random.Generator) -> str:
        fake = _faker(self.lang)
        fake.seed_instance(int(rng.integers(2**31)))
        kinds = (
            fake.name, fake.address, fake.company, fake.job, fake.city, fake.street_address,
            fake.phone_number, fake.email, fake.url, fake.date, fake.iban, fake.ean13,
            fake.license_plate, fake.credit_card_number, fake.postcode,
        )  # fmt: skip
        text = kinds[rng.integers(len(kinds))]()
        return re.sub(r"\s*\n\s*", ", " if self.lang == "en" else " ", text)

    def _sentence(self, rng: np.random.Generator, n_words: int | None = None) -> str:
        """A sentence: faker's (common words, grammatical-looking) or dictionary words."""
        n = n_words or int(rng.integers(3, 16))
        if rng.random() < 0.5:
            fake = _faker(self.lang)
            fake.seed_instance(int(rng.integers(2**31)))
            text = fake.sentence(nb_words=n)
            if self.lang == "zh":
                text = text.replace(".", str(rng.choice(list("。。。！？；"))))
            return text
        common = min(len(self.words), 10000)  # running text is mostly common words
        words = [self.words[i] for i in rng.integers(0, common, n)]
        if self.lang == "en":
            words[0] = words[0].title()
            for i in range(1, len(words) - 1):  # commas and the odd capitalized name
                if rng.random() < 0.08:
                    words[i] += ","
                elif rng.random() < 0.05:
                    words[i] = words[i].title()
            return " ".join(words) + str(rng.choice(list("......!?:;")))
        cut = sorted(rng.choice(np.arange(1, n), size=min(2, n - 1), replace=False).tolist())
        parts = ["".join(words[a:b]) for a, b in zip([0, *cut], [*cut, n])]
        return "，".join(parts) + str(rng.choice(list("。。。！？；")))

    def _field(self, rng: np.random.Generator) -> str:
        """A key-value field of a form or invoice."""
        fields = FIELDS_EN if self.lang == "en" else FIELDS_ZH
        key = fields[rng.integers(len(fields))]
        value = self._pattern(rng) if rng.random() < 0.5 else self._entity(rng)
        colon = str(rng.choice([": ", ":", " ", " - "])) if self.lang == "en" else "："
        if self.lang == "en" and rng.random() < 0.3:
            key = key.upper()
        return f"{key}{colon}{value}"

    def _row(self, rng: np.random.Generator) -> str:
        """A table row: item, quantity, prices."""
        item = self.sep.join(self._word(rng) for _ in range(int(rng.integers(1, 4))))
        if self.lang == "en" and rng.random() < 0.5:
            item = item.upper()
        qty = int(rng.integers(1, 20))
        price = rng.integers(1, 100000) / 100
        cur = str(rng.choice(["", "$", "RM", "EUR "])) if self.lang == "en" else "￥"
        gap = " " * int(rng.integers(1, 3))
        return f"{item}{gap}{qty}{gap}{cur}{price:,.2f}{gap}{cur}{qty * price:,.2f}"

    def _document(self, rng: np.random.Generator) -> str:
        """A document line: pieces joined until a target length drawn around 40 chars."""
        target = int(np.clip(rng.lognormal(np.log(38 if self.lang == "en" else 20), 0.6), 4, 110))
        limit = min(110 if self.lang == "en" else 60, int(target * 1.25) + 4)
        makers = (self._sentence, self._sentence, self._field, self._row, self._entity)
        text = ""
        while len(text) < target:
            piece = makers[rng.integers(len(makers))](rng)
            text = f"{text}{self.sep}{piece}" if text else piece
        if len(text) > limit:  # cut at a word boundary when there is one
            cut = text.rfind(" ", 0, limit + 1) if self.lang == "en" else limit
            text = text[: cut if cut > limit // 2 else limit]
        return text

    def _scene(self, rng: np.random.Generator) -> str:
        """A sign, a shop front, a product label: short and often capitalized."""
        r = rng.random()
        if r < 0.6:
            text = self.sep.join(self._word(rng) for _ in range(int(rng.integers(1, 3))))
        elif r < 0.8:
            text = self._entity(rng).split(",")[0]
        else:
            text = self._pattern(rng)
        if self.lang == "en":
            case = rng.random()
            text = text.upper() if case < 0.45 else text.title() if case < 0.75 else text
        return text[:24]

    def _words_line(self, rng: np.random.Generator) -> str:
        if self.lang == "zh":
            text = "".join(self._pick_words(rng, int(rng.integers(1, 6)), ""))
            if rng.random() < 0.2:
                text += str(rng.choice(list("，。：；、！？")))
            return text
        words = self._pick_words(rng, int(rng.integers(1, 5)), " ")
        case = rng.random()
        if case < 0.25:
            words = [w.title() for w in words]
        elif case < 0.4:
            words = [w.upper() for w in words]
        elif case < 0.55:
            words[0] = words[0].title()
        text = " ".join(words)
        if rng.random() < 0.2:
            text += str(rng.choice(list(".,:;!?")))
        return text

    def _pick_words(self, rng: np.random.Generator, n: int, sep: str) -> list[str]:
        """Up to ``n`` words whose joined length stays within max_chars (whole words only)."""
        words, length = [], 0
        for i in rng.integers(0, len(self.words), n):
            w = self.words[i]
            if words and length + len(sep) + len(w) > self.max_chars:
                break
            words.append(w)
            length += len(w) + (len(sep) if len(words) > 1 else 0)
        return words

    # ------------------------------------------------------------ public

    def draw(self, kind: str, rng: np.random.Generator) -> str:
        makers = {
            "words": self._words_line,
            "pattern": self._pattern,
            "entity": self._entity,
            "sentence": self._sentence,
            "document": self._document,
            "scene": self._scene,
        }
        if kind not in makers:
            raise ValueError(f"unknown text kind {kind!r}; known: {list(makers)}")
        return makers[kind](rng)

    def clean(self, text: str) -> str:
        """Charset-filtered, single-spaced, stripped."""
        return re.sub(r"\s+", " ", self.charset.strip(text)).strip()

    def sample(self, rng: np.random.Generator, kind: str | None = None) -> str:
        """A line of ``kind``; without one, the short-line mix (words and patterns
        within ``max_chars``) of the clean profile."""
        for _ in range(20):
            if kind is None:
                k = "pattern" if rng.random() < self.pattern_ratio else "words"
                limit = self.max_chars
            else:
                k, limit = kind, 10_000
            text = self.clean(self.draw(k, rng))
            if 0 < len(text) <= limit:
                return text
        raise RuntimeError(f"could not draw a text line within charset {self.charset.name!r}")
