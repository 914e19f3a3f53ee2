"""Rule-based entity extraction with validation and date/month resolution.

Why rules rather than a learned tagger: the entities a utility bot needs (户号, phone,
work-order id, amounts, dates) have a rigid surface form, and resolving "下周一" to an ISO
date needs a reference date anyway.  Rules are exact, fast (< 0.1 ms) and explainable.

All patterns run on the length-preserving normalised text, so ``start``/``end`` are offsets
into the caller's original text.

The dialogue reads a form's answer from the raw text with ``intents.slots`` (narrower patterns,
documented there); signals such as a hazard or "cancel" are ``intents.signals``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple

from . import places
from .normalize import normalize_chars, to_simplified
from .numbers import (CN_DIGIT_CHARS, CN_MAGNITUDE_CHARS, CN_NUM_CHARS, EN_SUM_WORDS, cn_to_number, digits_view,
                      en_words_to_number, grouped_numbers, to_int, yuan_jiao_fen)

EXTRACTOR = "RegexEntityExtractor"
LOOKUP_EXTRACTOR = "LookupEntityExtractor"

# Priority decides overlaps: lower wins.
PRIORITY = {"work_order_id": 0, "phone_number": 1, "account_number": 2, "amount": 3,
            "date": 4, "month": 5, "district": 6, "address": 7}

_CN = f"[{CN_NUM_CHARS}]"
_NUM = rf"(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d{{1,2}})?"

# "WO261205000781", "WO 261205 000781", "WO-261203-000500", "wo 2612 0300 0123": the digits may
# be set apart in groups of any size as customers copy them from an SMS or read them out
# "WO-2026-000318" (a number from another system, or misremembered): any 8 to 14 digits after the WO
# "W0…" (a zero for the O), "W O 2612…", "WO.261204.000622", "WO12345": mistyped ones too
WO_RE = re.compile(r"(?<![a-z0-9])w ?[o0](?:[-_ .]?(\d(?:[-_ .]?\d){7,13})|[-_]?(\d{5,7}))(?!\d)")
# "工单号 261130123456": a customer who leaves out the WO still means the work order (its
# twelve digits would otherwise read as an account number); the date part must be a date
WO_CONTEXT_RE = re.compile(r"(?:工单|单号|(?:work |repair )?order|ticket)(?:\s*(?:number|no\.?|#))?"
                           r"[号码是为:：\s]{0,3}((\d\d)(\d\d)(\d\d)[-\s]?\d{6})(?!\d)")
# "查一下工单2026112800045", "ticket 2026120100012 status?": fourteen or thirteen digits named as an
# order are its number, not an account
WO_LONG_CONTEXT_RE = re.compile(r"(?:工单|单号|(?:work |repair )?order|ticket)(?:\s*(?:number|no\.?|#))?"
                                r"(?:[号码是为:：\s]{0,3}|\s+is\s+)(\d{13,14}|\d{8}-\d{3,6})(?!\d)")
PHONE_RE = re.compile(
    r"(?<![\d+])(?:(?:\+|00)86[-\s]?|86[-\s])?\(?(1[3-9]\d)\)?[-\s.]?(\d{4})[-\s.]?(\d{4})(?!\d)")
# a landline: "021-64381209", "(021)64381209", "0571 8765432", "02164381209": an area code (010, 02x
# with eight digits; 0xxx with seven or eight) and a local number that does not start with 0 or 1
LANDLINE_RE = re.compile(r"(?<![\d+\-./])(?:\((0(?:10|2\d|[3-9]\d\d))\)\s?|(0(?:10|2\d|[3-9]\d\d))[-\s]?)([2-9]\d{6,7})"
                         r"(?![\d\-/.])")
ACCOUNT_RE = re.compile(r"(?<![\d.])(\d{10,13})(?![\d.])")  # the plain form; see grouped_numbers
_MOBILE_START = re.compile(r"1[3-9]")
_LETTERS_BEFORE_RE = re.compile(r"[a-z]+$")  # letters glued to a number: its kind ("sf", "gd", "no")
_ACCOUNT_WORDS_EN = frozenset({"no", "acct", "account", "ac", "nr", "num", "number", "huhao", "hu"})
AMOUNT_RES = [
    re.compile(rf"(?:[￥¥]|rmb ?|cny ?)\s?({_NUM})(?:\s?(?:元|块钱|块|yuan|rmb|cny))?"),
    re.compile(rf"(?<![\d.])({_NUM})\s?(?:元|块钱|块|圆|yuan|rmb|cny|rmb|bucks)(?![a-z])"),
    re.compile(rf"(?<!几)({_CN}{{1,10}})(?:多)?\s?(?:元|块钱|块)(?!\d)"),  # "三百多块": 300 ("几百块": no sum)
]
# What may not follow a bare sum: a unit of something else (200度, 3个月, 5楼, 2 kWh, 3 days),
# more digits (an account, a date "12/10", a time "8:30", a range "3-5"), a letter ("3x", "5f").
# "多/余/来" before the unit are skipped ("两百多度" is energy too).  The sentence's own full
# stop or comma may follow ("交了500，只到账300").
_NOT_MONEY_AFTER = (r"(?!\d|[.,:/\-~]\d|\s\d|[a-z]|\s?(?:多|余|来)?\s?(?:度|千瓦|瓦|伏|安|kwh|kw|号|日|月|年|天|周|次|个"
                    r"|期|点|小时|分|秒|%|户|楼|层|栋|幢|单元|室|元|块|位|人|台|家|间|套|张|条|根|只|遍|趟|回|倍|岁|米"
                    r"|公里|页|项|笔"
                    r"|days?|months?|weeks?|years?|times?|st\b|nd\b|rd\b|th\b|am\b|pm\b|h\b|hours?|min|bills?"
                    r"|accounts?|of\b|km\b|m\b|o'?clock|floors?|percent|degrees?))")
# English: nor a counted noun, singular or plural ("took 3 tries", "paid 2 visits")
_NOT_MONEY_AFTER_EN = _NOT_MONEY_AFTER + (
    r"(?!\s+(?:(?!(?:as|was|is|this|its|his|has|us|yes|plus|less|thus|twice|always|afterwards)\b)[a-z]+s\b"
    r"|(?:person|guy|man|worker|photo|picture|call|attempt|try|visit|step|reading|meter|socket|outlet|light"
    r"|bulb|house|home|flat|apartment|room|building|household|kva|amp|volt|watt|minute|second|hour|day"
    r"|week|month|year|time|floor|unit|storey|story|digit|number|kilowatt)\b))")
_SUM = r"(?:\d{1,3}(?:,\d{3})+|\d{1,5})(?:\.\d{1,2})?"  # not an account or phone number
# a Chinese numeral that is a quantity (两百三, 一千二, 五十): it has a magnitude character
_CN_QTY = rf"[{CN_DIGIT_CHARS}]*[{CN_MAGNITUDE_CHARS}][{CN_NUM_CHARS}]*"
# "交三百", "扣了158.2", "paid 230", "overpaid by 50": a sum right after a verb of paying, no unit
AMOUNT_VERB_CN_RE = re.compile(rf"(?:交|缴|充值|充|付|扣|预存)(?:了|掉|过|的)?\s?({_SUM}|{_CN}{{2,6}}){_NOT_MONEY_AFTER}")  # not "交一下"
AMOUNT_VERB_EN_RE = re.compile(
    rf"\b(?:pay|pays|paid|paying|top(?:ped)? up|topup|prepay|prepaid|deducted|debited|(?:over)?charged|overpaid|billed"
    rf"|refund(?:ed)?|owe[sd]?|owing|costs?|costing|fined)(?: me| us| you)?"
    rf"(?: (?:by|about|around|over|more than|less than|under|nearly|almost|only|just|roughly|approximately|another"
    rf"|an extra|extra|again))?\s+({_SUM}k?|{EN_SUM_WORDS}){_NOT_MONEY_AFTER_EN}")

# --- sums written without a unit, which a word of money around them makes a sum ---------------
# "电费两百三", "11月电费612", "只到账300", "收据上只写了一千", "amount 150", "the bill jumped to 860",
# "deposit of two hundred": a money word, then at most a few characters of the same clause (no
# digit, no numeral, no 号/码/第/数: "退款单号12345" is an identifier, "示数23456" a meter reading),
# then the number with no unit after it (_NOT_MONEY_AFTER).  The weak words (一共, 每次, "it's", "usually") count only in a
# message that talks about money at all (_MONEY_CONTEXT_RE).
# (the other fees a customer pays: 物业费两千, 水费八十; not every 费: 浪费, 费劲, 收费站)
_OTHER_FEES_CN = ("(?:物业|水|燃气|煤气|网|话|管理|停车|取暖|暖气|安装|维修|材料|人工|上门|检测|增容|工本|开户|过户|月租"
                  "|基本|容量|需量|服务|手续)费")
_MONEY_NOUNS_CN = ("电费", "费用", _OTHER_FEES_CN, "账单", "余额", "欠费", "欠款", "押金", "金额", "退款", "赔偿", "补偿", "滞纳金",
                   "违约金", "手续费", "服务费", "收据", "到账", "扣款", "扣费", "差价", "差额", "多扣", "多收", "少了")
# ("电费…我记得好像是一百八十六": the sum a customer remembers, after the clause that names the bill)
_MONEY_WEAK_CN = ("加起来", "一共", "总共", "合计", "总计", "每次", "差的", "还差", "相差", "记得", "好像是", "大概是",
                  "应该是")
# (nor 几: "电费几百" is no sum of a hundred)
_CN_GAP = rf"[^\d{CN_NUM_CHARS},.;:!?、\s号码编第数度几]{{0,6}}?\s?"  # not "单号12345", "示数23456"
AMOUNT_NOUN_CN_RE = re.compile(rf"(?:{'|'.join(_MONEY_NOUNS_CN)}){_CN_GAP}({_SUM}|{_CN_QTY}){_NOT_MONEY_AFTER}")
AMOUNT_WEAK_CN_RE = re.compile(rf"(?:{'|'.join(_MONEY_WEAK_CN)}){_CN_GAP}({_SUM}|{_CN_QTY}){_NOT_MONEY_AFTER}")
# "换个空开要一百五", "是不是要500押金": a price after 要/花/收, only where the clause ends right
# after it (not "要3天", "要2个人", "要3到5天"); ten or more, or a numeral with a magnitude
# ("我要2" answers a menu)
AMOUNT_COST_CN_RE = re.compile(
    rf"(?:要|花了?|花费|收了?|报价|开价)\s?(\d{{2,5}}(?:\.\d{{1,2}})?|{_CN_QTY})"
    rf"(?=多?\s*(?:$|[,.;:!?、)]|吗|呢|吧|啊|呀|哦|了|左右|上下|押金|的押金|还是|就))")
# "500押金", "两百的赔偿": the sum before the word of money
AMOUNT_BEFORE_NOUN_CN_RE = re.compile(
    rf"(?<![\d.几])({_SUM}|{_CN_QTY})的?(?:押金|保证金|赔偿|补偿|违约金|滞纳金|手续费|服务费|差价)")
_MONEY_NOUNS_EN = r"bills?|fees?|charges?|payment|price|cost|balance|amount|deposit|refund|compensation|arrears|debt|fine|penalty"
_MONEY_WEAK_EN = r"it'?s|it is|that'?s|that is|total|usually|normally|typically"
_EN_LINK = (r"(?:[^\d.,;:!?\n]{0,30}?\b(?:is|was|were|be|of|says|said|shows|showed|reads|to|around|about|over"
            r"|under|than|really|only|just|nearly|almost|totals?|totall?ing|reached|hit))?[\s:=]+")
AMOUNT_NOUN_EN_RE = re.compile(rf"\b(?:{_MONEY_NOUNS_EN})\b{_EN_LINK}({_SUM}k?|{EN_SUM_WORDS}){_NOT_MONEY_AFTER_EN}")
AMOUNT_WEAK_EN_RE = re.compile(rf"\b(?:{_MONEY_WEAK_EN})\b{_EN_LINK}({_SUM}k?|{EN_SUM_WORDS}){_NOT_MONEY_AFTER_EN}")
# "took 1,050 from my card", "want 500 compensation", "fifty yuan", "265.4 each time"
AMOUNT_TAKEN_EN_RE = re.compile(
    rf"\b(?:took|taken|takes|withdrew|withdrawn|deducted|debited|charged|stole|removed)\s+({_SUM}k?|{EN_SUM_WORDS})"
    rf"\s+(?:from|out of|off)\b")
AMOUNT_BEFORE_NOUN_EN_RE = re.compile(
    rf"(?<![\d.,])\b({_SUM}k?|{EN_SUM_WORDS})\s+(?:in\s+)?(?:compensation|refund|deposit|late fees?|fees?|penalty"
    rf"|surcharge|yuan|rmb|kuai|bucks)\b")
AMOUNT_EACH_EN_RE = re.compile(rf"(?<![\d.,])\b({_SUM}k?)\s+(?:each time|each|both times|apiece)\b")
# "电费要交89.5", "it's 99.5": a number with cents, in a message about money, is a sum (unless
# it may be a date, 9.5 / 12.10, which the date patterns read)
AMOUNT_DECIMAL_RE = re.compile(rf"(?<![\d.,/:\-])(\d{{1,5}}\.\d{{1,2}}){_NOT_MONEY_AFTER}")
_MONEY_CONTEXT_RE = re.compile(r"钱|费|元|块|交|缴|付|扣|充值|款|账|价|押金|退|赔|收据|bill|fee|charg|pay|paid|cost|price"
                               r"|balance|amount|deposit|refund|debit|deduct|owe|yuan|rmb|kuai|bucks|money|card|compensat"
                               r"|penalt|surcharge")
_YEAR_MONTH_RE = re.compile(r"(?:19|20)\d\d\.(?:0?[1-9]|1[0-2])")
_EN_SUM_WORD_CUE = re.compile(r"hundred|thousand|ty\b|ty[\s-]")  # a sum in words has one of these
_MONEY_NOUN_CN_CUE = frozenset(a[-1] for a in _MONEY_NOUNS_CN)
_MONEY_WEAK_CN_CUE = frozenset(a[-1] for a in _MONEY_WEAK_CN)
_COST_CN_CUE = frozenset("要花收价")
_BEFORE_NOUN_CN_CUE = frozenset("金偿价费")
_CN_MAGNITUDE_CUE = frozenset(CN_MAGNITUDE_CHARS)
_PAY_CUE = frozenset("交缴充付扣存")
# "1千元", "1.5万元", "200多块": Arabic digits with a Chinese magnitude or "more than".
AMOUNT_MIXED_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s?(百|千|万)?(多)?\s?(?:元|块钱|块)")
_MAGNITUDE = {"百": 100, "千": 1000, "万": 10000}
# "12块5", "九十九块九", "三块五", "一块二毛三", "一块零五": yuan with tenths (and hundredths); the
# digit after 块 is a 毛 unless a count or another unit follows it ("两块5号电池", "3块5个").
# (a digit after 块/元 that is followed by anything numeric is no 毛: "三块五十个")
_JIAO_D = "[1-9一二两三四五六七八九]"
AMOUNT_YUAN_JIAO_RE = re.compile(
    rf"(?<![\d.几])(\d{{1,6}}|{_CN}{{1,8}})\s?(?:块|元)(零)?({_JIAO_D})(?:\s?[毛角](?:({_JIAO_D})分?)?)?(?:钱)?"
    rf"(?![{CN_NUM_CHARS}毛角分]){_NOT_MONEY_AFTER}")
# "5毛", "八毛八", "8毛5", "两毛钱", "三角五分": tenths of a yuan alone (not 毛病/毛巾/毛衣…, 九牛一毛,
# 一毛不拔; 角 is a sum only with 钱 or a 分 after it: 三角形, 三角插头 are shapes)
_NOT_MAO_WORD = "病巾衣线笔毯发利重坯绒躁刺孔细皮边驴豆竹料茸尖虫不毛"
AMOUNT_JIAO_RE = re.compile(
    rf"(?<![\d.{CN_NUM_CHARS}块元牛])({_JIAO_D})\s?(?:毛(?:({_JIAO_D})分?)?(?:钱)?(?![{_NOT_MAO_WORD}])"
    rf"|角(?:钱|({_JIAO_D})分(?:钱)?))(?![\d{CN_NUM_CHARS}毛角分]){_NOT_MONEY_AFTER}")
_JIAO_CUE = frozenset("毛角")
# a Chinese character after a final 一 that makes it a word (一起, 一直, 一下), not a digit
_WORD_AFTER_ONE_RE = re.compile(r"[\u4e00-\u9fff](?<![了的吗呢吧啊呀哦嘛钱是])")
# "1.5万", "1.2k", "3千": Arabic digits with a magnitude and no unit after, in a message about
# money (not "1.5万度", "5千瓦", "2k steps"; "1.5万元" is AMOUNT_MIXED_RE's)
AMOUNT_MAGNITUDE_RE = re.compile(rf"(?<![\d.,])(\d{{1,4}}(?:\.\d{{1,2}})?)\s?(k|千|万)(?![a-z]){_NOT_MONEY_AFTER}")
_MAGNITUDE_K = {**_MAGNITUDE, "k": 1000}
# "电费两百三正常吗，上个月才一百五", "以前只要80": the sum of an earlier time it is compared with
AMOUNT_EARLIER_CN_RE = re.compile(
    rf"(?:上上?个?月|上只月|上次|上回|以前|之前|平时|平常|往常|原来|去年|每个?月)(?:的?(?:电费|账单|费用))?"
    rf"(?:才|只|就|只有|才只有|也就|只要|才要)(?:交了?|付了?|扣了?|是)?\s?"
    rf"(\d{{2,5}}(?:\.\d{{1,2}})?|{_CN_QTY}){_NOT_MONEY_AFTER}")
_EARLIER_CUE = frozenset("才只就")
# "一千二的发票", "两百的电费", "开500的收据": the sum a document or bill is for (digits only before
# a receipt: "1202的电费" is a room's)
AMOUNT_BEFORE_DOC_CN_RE = re.compile(
    rf"(?<![\d.{CN_NUM_CHARS}几])(?:({_CN_QTY})的(?:发票|收据|电费|账单)|(\d{{2,5}}(?:\.\d{{1,2}})?)的(?:发票|收据))")
_DOC_CUE = frozenset("票据费单")

_WD_CN = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5,
          "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6}
_WD_EN = {"monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2,
          "thursday": 3, "thu": 3, "thur": 3, "thurs": 3, "friday": 4, "fri": 4,
          "saturday": 5, "sat": 5, "sunday": 6, "sun": 6}
_MONTH_EN = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_MONTH_EN.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})
_MONTH_EN["sept"] = 9
_MON_ALT = "|".join(sorted(_MONTH_EN, key=len, reverse=True))
# the usual misspellings customers type
_WD_EN.update({"wendesday": 2, "wednsday": 2, "wensday": 2, "wedensday": 2, "thurday": 3, "thursay": 3,
               "thrusday": 3, "satuday": 5, "saterday": 5, "saturady": 5, "tuseday": 1, "teusday": 1,
               "fridy": 4, "firday": 4, "mondy": 0, "sundy": 6})
_WD_ALT = "|".join(sorted(_WD_EN, key=len, reverse=True))

# (后 also in its traditional form 後, as a phone's input method may give it: "後天上午")
# (Shanghainese 前日 / 后日: the day before yesterday / after tomorrow, not 以后日子, 目前日均, 提前日期,
# 日后, 日期, 日常)
REL_DAY_CN = re.compile(r"(大[后後]天|大前天|大[后後]日|大前日|今天|今日|今儿|今晚|今早|今晨|今夜|今朝|明天|明日|明儿|明早|明晚|明朝|名天|[后後]天|[后後]儿"
                        r"|昨天|昨日|昨晚|昨儿|昨夜|前天|前儿"
                        r"|(?<![之以今然此往落最而过先午背日目提当从节年月周天号前后後])(?:前|[后後])日"
                        r"(?!期|子|常|程|用品|记|志|历|均|益|照|渐|光|元|本|后|前|内|间|起|报社))")
_REL_DAY_OFF = {"今天": 0, "今日": 0, "今儿": 0, "今晚": 0, "今早": 0, "今晨": 0, "今夜": 0, "今朝": 0,
                "明天": 1, "明日": 1, "明儿": 1, "明早": 1, "明晚": 1, "明朝": 1, "名天": 1, "后天": 2, "后儿": 2,
                "大后天": 3, "昨天": -1, "昨日": -1, "昨晚": -1, "昨儿": -1, "昨夜": -1,
                "前天": -2, "前儿": -2, "大前天": -3, "前日": -2, "后日": 2, "大前日": -3, "大后日": 3}
# (上上周一: the week before last; Shanghainese 上只礼拜三: 只 as the measure word)
WEEKDAY_CN = re.compile(r"(下下[个只]?|下[个只]?|这[个只]?|本|上上[个只]?|上[个只]?|next\s*|this\s*|last\s*)?"
                        r"(?:周|星期|礼拜)([一二三四五六日天1-7])")
_COUNT_AFTER_RE = re.compile(r"\d|\s*(?:次|天|个|年|小时|回|趟)")
_QUALIFIER_EN_CN = {"next": "下", "this": "这", "last": "上"}
MD_CN = re.compile(
    rf"(?:(\d{{4}}|今年|明年|去年)\s*年?\s*)?(\d{{1,2}}|{_CN}{{1,3}})\s*月(?:份)?\s*(\d{{1,2}}|{_CN}{{1,3}})\s*[日号]")
# "12月10停电吗": the day without 日/号 (not a count of something: 12月10度, 3月5个)
# (nor a word that begins with a numeral: "11月一共", "3月一直")
MD_CN_BARE = re.compile(
    rf"(?<!\d)(\d{{1,2}}|{_CN}{{1,3}})月(?!一[共直下起般样定些点切向])(\d{{1,2}}|{_CN}{{1,3}})(?![\d日号度元块个天万千百点多%年岁次户块号]|{_CN}|\s?(?:kwh|元|块|度))")
DAY_ONLY_CN = re.compile(rf"(?<![\d月.\-/路街道巷弄村区栋楼室院第])(\d{{1,2}}|{_CN}{{1,3}})(?:号(?![楼码线院栋室])"
                         rf"|日(?![内以之后前期均常用夜]))")
# "20261209": a date written in eight digits (a year near the reference year; not a number's
# digits: "表号20261209", "#20261209")
COMPACT_DATE = re.compile(r"(?<![\d.a-z号码#])((?:19|20)\d\d)(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?![\d.])")
# the writer says the day comes first: "I write the day first", "dd/mm", "UK date format"
DAY_FIRST_RE = re.compile(r"\bday\s+(?:comes\s+|goes\s+)?(?:first|before the month)\b|\bdd[/.\-]mm\b|\bday[/.\-]month\b"
                          r"|\b(?:british|uk|european|australian)\s+(?:date\s+)?(?:format|style|order|dates?)\b"
                          r"|日在前|先写日")
ISO_DATE = re.compile(r"(?<!\d)(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?(?!\d)")
# "12/10/2026", "10/12/2026": month first unless the first number cannot be a month
MDY_NUM = re.compile(r"(?<![\d/.])(\d{1,2})/(\d{1,2})/(\d{4})(?![\d/])")
# (not a sum with a magnitude, "1.2k", "1.5万", nor "12.10am")
MD_NUM = re.compile(r"(?<![\d.￥¥$\-/])(\d{1,2})([./\-])(\d{1,2})(?![\d.\-/]|[a-z]|\s?(?:元|块|%|度|kwh|yuan|rmb|万|千|百))")
# a meter's reading, "电表显示12.09", "meter reads 12.10": no date
_READING_BEFORE_RE = re.compile(r"(?:电表|表上|读数|示数|表码|表底|\bmeter|\breading|\breads)[^\d,.;:!?]{0,4}$")
# "周一到周五", "Monday to Friday", "mon-fri": the working week (opening hours), no days
WORKWEEK_RE = re.compile(r"(?<![上下这本个只])(?:周|星期|礼拜)一\s*(?:到|至|-|~|—)\s*(?:周|星期|礼拜)?[五六日天]"
                         r"|(?<!next )(?<!this )(?<!last )\bmon(?:day)?\s*(?:to|-|–|through|thru|till|until)\s*"
                         r"(?:fri|sat|sun)(?:day)?\b")
DAYS_FROM_CN = re.compile(rf"(\d{{1,2}}|{_CN}{{1,3}})[天日](以后|之后|后|以前|之前|前)")
# "一周后", "两个星期以后", "3周前": weeks counted from the reference date (not "第一周后")
WEEKS_FROM_CN = re.compile(rf"(?<!第)(\d{{1,2}}|{_CN}{{1,2}})个?(?:周|星期|礼拜)(以后|之后|后|以前|之前|前)")
# "月底", "这个月底", "下月末", "12月底": the last day of that month (not "每月底", a routine; a
# bare "月底" is this month's)
MONTH_END_CN = re.compile(rf"(上上[个只]?|上[个只]?|这[个只]?|本|下下[个只]?|下[个只]?|(?:(\d{{4}}|今年|明年|去年)年?)?"
                          rf"(\d{{1,2}}|十[一二]|[一二三四五六七八九十]))?月(?:底|末)")
_MONTH_END_OFF = {"上上": -2, "上上个": -2, "上": -1, "上个": -1, "这": 0, "这个": 0, "本": 0, "": 0,
                  "下": 1, "下个": 1, "下下": 2, "下下个": 2}
# "the end of the month", "end of next month", "by month end": its last day
MONTH_END_EN = re.compile(r"\b(?:(?:the )?end of (?:the|this|(next|last)) month|(?:this )?month[- ]end)\b")
# "the 8th of this month", "the 3rd of next month"
NTH_OF_MONTH_EN = re.compile(r"\b(?:the )?(\d{1,2})(?:st|nd|rd|th) of (this|next|last) month\b")
# "on 10th", "12th afternoon": a day of the month without "the" (not "3rd floor", "2nd time")
ORDINAL_DAY_EN = re.compile(
    r"(?<![\w/.-])(\d{1,2})(?:st|nd|rd|th)\b(?!\s*(?:of\b|floor|fl\b|time|attempt|call|try|visit|week|month|year|"
    r"bill|day|place|grade|line|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|building|unit|room))", re.I)
_RANGE_TAIL_EN = re.compile(r"\s*(?:to|-|–|through|until|till|or|and)\s*(\d{1,2})(?:st|nd|rd|th)?\b(?!\s*(?:am|pm|:|点|h\b))")
# what stands between two weekdays named as alternatives or a range ("周一或者周二", "Mon or Tue")
_ALTERNATIVE_GAP_RE = re.compile(r"^\s*(?:或者?|或是|还是|和|跟|与|、|到|至|,|，|/|-|~|or|and|to|through)\s*$", re.I)
NTH_EN = re.compile(r"\bthe (\d{1,2})(?:st|nd|rd|th)\b(?! of| (?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
                    r"|\s*(?:floor|fl\b|time|attempt|call|try|visit|building|unit|room))")
# "下个月5号", "这个月20号": a day of a month named relatively
# a month named from this one (大上个月: the month before last; Shanghainese 上只月 = 上个月, 迭个月 /
# 搿个月 = 这个月)
_REL_MONTH_OFF = {"上上个月": -2, "上上月": -2, "大上个月": -2, "大上月": -2, "上个月": -1, "上月": -1,
                  "上只月": -1, "前一个月": -1, "这个月": 0, "本月": 0, "当月": 0, "这月": 0, "迭个月": 0, "搿个月": 0,
                  "迭只月": 0, "搿只月": 0, "下个月": 1, "下月": 1, "下只月": 1, "下下个月": 2, "下下月": 2,
                  "大下个月": 2}
_REL_MONTH_ALT = "|".join(sorted(_REL_MONTH_OFF, key=len, reverse=True))
REL_MONTH_DAY_CN = re.compile(rf"({_REL_MONTH_ALT})(?:的)?(\d{{1,2}}|{_CN}{{1,3}})[号日]")
# "wednesday next week"
WEEKDAY_NEXT_WEEK_EN = re.compile(r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday) next week\b")
# holidays on a fixed day: the next one from the reference date
HOLIDAYS = {"元旦": (1, 1), "平安夜": (12, 24), "圣诞节": (12, 25), "圣诞": (12, 25), "国庆节": (10, 1),
            "劳动节": (5, 1), "情人节": (2, 14), "christmas eve": (12, 24), "christmas day": (12, 25),
            "christmas": (12, 25), "new year's day": (1, 1), "new years day": (1, 1),
            "双十一": (11, 11), "双11": (11, 11), "双十二": (12, 12), "双12": (12, 12), "儿童节": (6, 1),
            "妇女节": (3, 8), "万圣节": (10, 31), "new year's eve": (12, 31), "new years eve": (12, 31),
            "valentine's day": (2, 14), "halloween": (10, 31)}
# A holiday is the next one from the reference date, unless a year is named with it ("去年平安夜",
# "今年元旦", "last Christmas") or the sentence is about the past (``toward_past``: "国庆节当天用电多少",
# "双十一那天停电一整天，投诉").
HOLIDAY_RE = re.compile(
    r"(?:(?P<y>今年|去年|明年|前年)的?|\b(?P<q>last|this|next)\s+)?(?P<h>"
    + "|".join(re.escape(h) if not h.isascii() else rf"\b{re.escape(h)}\b"
               for h in sorted(HOLIDAYS, key=len, reverse=True))
    + r")(?![\d十])")
MONTHS_AGO_CN = re.compile(rf"(\d{{1,2}}|{_CN}{{1,3}})个月(?:以前|之前|前)")
MONTH_YEAR_NUM = re.compile(r"(?<![\d/.\-])(\d{1,2})/(\d{4})(?![\d/])")
REL_DAY_EN = re.compile(r"(?<![a-z])((?:the )?day after (?:tomorrow|tmrw|tmr|tmrow|2morrow|tomm?orr?ow)|the day before yesterday|"
                        r"this (?:morning|afternoon|evening)|"  # today's
                        r"today|tonight|tonite|2nite|tomorrow|tmrw|tmr|yesterday|last night|"
                        r"yesterdy|yesteday|yesturday|yestarday|"
                        r"tomm?orr?ow|tommorrow|2morrow|2moro|"  # the usual misspellings
                        r"yday|ming ?tian|hou ?tian|jin ?tian|zuo ?tian"  # pinyin, next to Han too
                        r"|yest[a-z]{4,7}|tom[a-z]{4,6})"  # other misspellings, checked by _rel_day_en_offset
                        r"(?:'?s)?(?![a-z])")  # "yesterday's usage", "yesterdays usage"
_REL_DAY_PINYIN = {"mingtian": 1, "houtian": 2, "jintian": 0, "zuotian": -1}


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (short words only: a misspelt "yesterday" or "tomorrow")."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _rel_day_en_offset(w: str) -> int | None:
    """Days from the reference date that a REL_DAY_EN word names; None for a word that only
    looks like one ("yesteryear", "tomatoes").  Customers type "yesterady", "yestreday",
    "tommorrw": any word within two edits of "yesterday"/"tomorrow" is taken for it."""
    off = _REL_DAY_PINYIN.get(w.replace(" ", ""))
    if off is not None:
        return off
    if w in ("today", "tonight", "tonite", "2nite") or w.startswith("this "):
        return 0
    if w in ("last night", "yday"):
        return -1
    if "after" in w:
        return 2
    if "before" in w:
        return -2
    if w.startswith("yest"):
        return -1 if _edit_distance(w, "yesterday") <= 2 else None
    if w.startswith("tom"):
        return 1 if _edit_distance(w, "tomorrow") <= 2 else None
    return 1  # tmr, tmrw, 2morrow…
# "in two days", "3 days later", "two days from now", "2 days ago", "a week from today"
DAYS_FROM_EN = re.compile(r"\b(?:in (\d{1,2}|one|two|three|four|five|six|seven|a couple of) (days?|weeks?)\b|"
                          r"(\d{1,2}|one|two|three|four|five|six|seven|a couple of|a) (days?|weeks?) "
                          r"(later|from now|from today|ago)\b)")
# pinyin: "xia zhou san", "zhou wu", "xingqi er"
WEEKDAY_PINYIN = re.compile(r"\b(xia ?xia ?|xia ?|zhe ?|ben ?|shang ?)?(?:zhou|xingqi|libai) ?(yi|er|san|si|wu|liu|ri|tian)\b")
_WD_PINYIN = {"yi": 0, "er": 1, "san": 2, "si": 3, "wu": 4, "liu": 5, "ri": 6, "tian": 6}
_QUALIFIER_PINYIN = {"xiaxia": "下下", "xia": "下", "zhe": "这", "ben": "本", "shang": "上"}

_EN_COUNT = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "a couple of": 2, "a": 1}
# "next week tuesday"
NEXT_WEEK_WEEKDAY_EN = re.compile(rf"\bnext week(?: on)?\s+({_WD_ALT})\b")
_PART_OF_DAY_EN = re.compile(r"\s+(?:morning|afternoon|evening|night|am\b|pm\b)")
_EVERY_BEFORE_EN = re.compile(r"\b(?:every|each)\s+$")
# "on Sat", "since Sun", "come Wed?": a bare "sat"/"sun"/"wed"/"mon" is a day after these words
# or right before a question mark ("I sat on", "the sun", "we wed" are not)
_DAY_ABBR_BEFORE_EN = re.compile(r"\b(?:on|by|since|until|till|from|before|after|come|came|coming)\s+$")
_DAY_ABBR_AFTER_EN = re.compile(r"\s*\?")
# "这周末", "下个周末", "this weekend", "next weekend": the Saturday of that week (a bare "周末" is
# any weekend: "周末你们上班吗")
WEEKEND_RE = re.compile(r"(下下个?|下个?|这个?|本|上个?)周末|\b(this coming|this|next|last|coming)\s+weekend\b")
_WEEKEND_CUE = frozenset("末")
WEEKDAY_EN = re.compile(rf"\b(?:(next|this|last|coming)\s+)?({_WD_ALT})\b")
MD_EN = re.compile(rf"\b(?:({_MON_ALT})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?|"
                   rf"(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MON_ALT}))\b(?:,?\s*(\d{{4}}))?")

REL_MONTH_CN = re.compile(rf"({_REL_MONTH_ALT})")
MONTH_CN = re.compile(
    rf"(?<![\d个几])(?:(\d{{4}}|今年|明年|去年|前年)年?)?(\d{{1,2}}|十[一二]|[一二三四五六七八九十])月(?:份)?"
    rf"(?!\s?(?:\d|{_CN})+\s?[日号])(?!初|中|底)")
ISO_MONTH = re.compile(r"(?<!\d)(\d{4})[-/.年](\d{1,2})(?:月份?)?(?![\d.\-/])")
REL_MONTH_EN = re.compile(r"\b(the month before last|last month|previous month|past month|"
                          r"this month|current month|next month)\b")
MONTH_EN = re.compile(rf"\b(?:(last|this)\s+)?({_MON_ALT})\b(?!\.?\s*\d{{1,2}}(?:st|nd|rd|th)?\b)"
                      rf"(?:\s*,?\s*(\d{{4}})|\s+(?:of\s+)?(last year|this year))?")
ADDRESS_RE = re.compile(
    r"[\u4e00-\u9fa5a-z0-9]{2,20}?(?:路(?!口)|街道|街|大道|巷|弄|村(?![镇委])|小区|花园|新村|公寓|大厦|家园|苑|园区)"
    r"(?:\s?\d+(?:号楼(?![道梯])|号院|号|栋|幢|单元|室|楼(?![道梯下上])|层|弄|巷)|[东西南北]区|[a-z]座)*"
    r"(?:\d+(?:号楼(?![道梯])|号院|号|栋|幢|单元|室|楼(?![道梯下上])|层))?"
    r"(?:(?<=号楼|单元)\d{3,4}|(?<=[栋幢层号])\d{3,4}(?![\d号弄楼栋]))?")  # "3号楼502", "7栋1单元301", "18号1102": the flat

# --- cheap pre-checks ---------------------------------------------------------------------
# Most messages have no digit, no Latin letter and none of a few key characters, yet every
# pattern above needs at least one of them to match at all.  A pattern whose cue is absent
# is not run (it would find nothing), which leaves the candidates and their order unchanged.
# The character sets are read off the patterns: each alternative contains one of them.
_DIGIT_RE = re.compile(r"\d")  # the same class the patterns' \d stands for
_LATIN_RE = re.compile(r"[a-z]")  # the English patterns are lower-case words (text is lowered)
_AMOUNT_WORD = frozenset("元块")  # 元 / 块 / 块钱
_NUMBERS_CUE = _AMOUNT_WORD | _PAY_CUE | _CN_MAGNITUDE_CUE | _JIAO_CUE  # without a digit or a letter, a sum needs one
_REL_DAY_CN_CUE = frozenset("今明名后後昨前")  # 今天 明天 (名天) 后天 昨天 前天 大后天 ...
_WEEKDAY_CN_CUE = frozenset("周星礼")  # 周 / 星期 / 礼拜
_MONTH_CHAR = frozenset("月")
_DAY_CHAR = frozenset("号日")
_DAYS_CUE = frozenset("天日")
_HOLIDAY_CUE = frozenset("元平圣国劳情双儿妇万")
# "12 Mudanjiang Road, Baoshan", "Room 302, 88 Youyi Road", "Caoxi North Road No. 88": a street
# address in English or pinyin (the road's name: one to three words that are not "the", "main"…)
_EN_ROAD_WORD = (r"\b(?!(?:the|a|an|my|our|your|this|that|main|same|on|at|in|of|to|from|near|busy|big|small|"
                 r"whole|entire|dark|every|any|some|no|which|what|whose|one|other|next)\b)[a-z][a-z'’-]*")
EN_ADDRESS_RE = re.compile(
    r"\b(?:(?:room|rm|flat|apt|unit|house|space|shop|suite)\s*[a-z]?\d+[a-z]?(?:-\d+)?,?\s*)?"
    r"(?:(?:tower|block|blk|bldg|building)\s*\d+[a-z]?,?\s*)?(?:\d{1,2}f,?\s*)?"  # "Rm 1502, Block 3, …", "2F, 1 …"
    r"(?:no\.?\s*\d{1,4}[a-z]?,\s*)?(?:(?:lane|ln)\s*\d{1,4},?\s*)?"  # "No. 15, Lane 1088, …"
    r"(?:(?:no\.?\s*)?\d{1,4}[a-z]?(?:\s*-\s*\d{1,4})?,?\s+)?"
    rf"(?:{_EN_ROAD_WORD}\s+){{1,3}}(?:road|rd|street|st|lane|ln|avenue|ave|boulevard|blvd|highway|hwy|lu|jie)\b\.?"
    r"(?:\s+(?:no\.?\s*)?\d{1,4}(?:\s*(?:lane|nong)\s*\d{1,4})?)?"
    r"(?:,?\s+(?:in\s+)?(?:huangpu|xuhui|changning|jing'?an|putuo|hongkou|yangpu|minhang|baoshan|jiading|pudong|"
    r"jinshan|songjiang|qingpu|fengxian|chongming)(?:\s+(?:district|new area))?)?")
# the street words EN_ADDRESS_RE ends with: most English messages name none (a cheap pre-check)
_EN_STREET_WORD_RE = re.compile(r"\b(?:road|rd|street|st|lane|ln|avenue|ave|boulevard|blvd|highway|hwy|lu|jie)\b")
_ADDRESS_CUE = frozenset("路街道巷弄村区园寓厦苑")  # the suffixes of ADDRESS_RE
_DATE_CN_CUE = _REL_DAY_CN_CUE | _WEEKDAY_CN_CUE | _MONTH_CHAR | _DAY_CHAR | _DAYS_CUE | _HOLIDAY_CUE | _WEEKEND_CUE
_WO_CUE = frozenset("单")  # 工单 / 单号
_CUE_CHARS = (_AMOUNT_WORD | _DATE_CN_CUE | _ADDRESS_CUE | _WO_CUE | _PAY_CUE | _MONEY_NOUN_CN_CUE | _MONEY_WEAK_CN_CUE
              | _COST_CN_CUE | _BEFORE_NOUN_CN_CUE | _CN_MAGNITUDE_CUE | _JIAO_CUE | _EARLIER_CUE | _DOC_CUE)


class _Cues(NamedTuple):
    """Which pattern cues a (normalised) text contains; see ``cues_of``."""

    digit: bool
    latin: bool
    chars: frozenset[str]

    def has(self, chars: frozenset[str]) -> bool:
        return not chars.isdisjoint(self.chars)


def cues_of(t: str) -> _Cues:
    return _Cues(_DIGIT_RE.search(t) is not None, _LATIN_RE.search(t) is not None,
                 _CUE_CHARS.intersection(t))


# Every cue present: runs every pattern (the reference behaviour, used by the tests).
ALL_CUES = _Cues(True, True, _CUE_CHARS)


def _scan(rx: re.Pattern[str], t: str, possible: bool) -> Iterable[re.Match[str]]:
    """``rx.finditer(t)``, or nothing when a cue check has shown ``rx`` cannot match."""
    return rx.finditer(t) if possible else ()


_NOT_PLACE_WORDS = "我你他她它们这那哪每整些的"  # pronouns and the like: words, not a place's name
_NOT_A_PLACE = re.compile(rf"^(?:小区|路|街)|[{_NOT_PLACE_WORDS}]")
_RUN_ON_CHARS = frozenset(_NOT_PLACE_WORDS + "了呢啊吧")  # where a place said in one breath starts after
_ADDR_PREFIX = re.compile(r"^.*?(?:住在|我家在|家住|地址是|地址|位于|在|是|到|：|:)")


@dataclass
class _Cand:
    entity: str
    start: int
    end: int
    value: Any
    extractor: str = EXTRACTOR


def _add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    idx = year * 12 + (month - 1) + delta
    return idx // 12, idx % 12 + 1


def _nearest_md(ref: dt.date, month: int, day: int) -> dt.date | None:
    """A month/day without a year: the occurrence closest to the reference date."""
    best = None
    for y in (ref.year - 1, ref.year, ref.year + 1):
        try:
            d = dt.date(y, month, day)
        except ValueError:
            continue
        if best is None or abs((d - ref).days) < abs((best - ref).days):
            best = d
    return best


def _nearest_day(ref: dt.date, day: int) -> dt.date | None:
    """Day ``day`` of the month before, this or the next, whichever is nearest ``ref``; of two
    as near ("the 22nd" on 7 December: 22 Nov and 22 Dec), the one to come (a customer who
    names a day that far off is mostly planning; ``toward_past`` moves it back where the
    sentence says past)."""
    cands = [c for c in (_safe_date(*_add_months(ref.year, ref.month, k), day) for k in (-1, 0, 1)) if c]
    return min(cands, key=lambda c: (abs((c - ref).days), c < ref)) if cands else None


def _safe_date(y: int, m: int, d: int) -> dt.date | None:
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None


def _year_word(word: str | None, ref: dt.date) -> int | None:
    if not word:
        return None
    return {"今年": ref.year, "明年": ref.year + 1, "去年": ref.year - 1,
            "前年": ref.year - 2}.get(word) or (int(word) if word.isdigit() else None)


def _weekday(ref: dt.date, qualifier: str, wd: int) -> dt.date:
    monday = ref - dt.timedelta(days=ref.weekday())
    if qualifier.startswith("下下"):
        return monday + dt.timedelta(days=14 + wd)
    if qualifier.startswith("下") or qualifier == "next":
        return monday + dt.timedelta(days=7 + wd)
    if qualifier.startswith("上上"):
        return monday + dt.timedelta(days=-14 + wd)
    if qualifier.startswith("上") or qualifier == "last":
        return monday + dt.timedelta(days=-7 + wd)
    if qualifier in ("这", "这个", "本", "this"):
        return monday + dt.timedelta(days=wd)
    delta = (wd - ref.weekday()) % 7  # bare weekday: the coming one, today included
    return ref + dt.timedelta(days=delta)


# A bare weekday ("周六", "Saturday") is read as the coming one; a request about what already
# happened (usage, a payment, an outage going on, a repair reported) means the last one.
PAST_INTENTS = frozenset({"usage_query", "payment_issue", "report_outage", "work_order_status", "complaint",
                          "invoice_request", "bill_query"})
_BARE_WEEKDAY_RE = re.compile(rf"(?:周|星期|礼拜)[一二三四五六日天1-7]|(?:on\s+)?(?:{_WD_ALT})")


# an outage asked about ("周三会停电吗", "power cut on Wednesday?") is a planned one
_ASKS_AHEAD_RE = re.compile(r"[?？吗]|会|\b(?:will|is there|are there|going to)\b")

# The sentence itself may say which way a bare weekday goes, whatever the intent: the words of
# its own clause next to it.  Past: "the crew that came on Thursday", "leaning since Saturday",
# "it failed on Monday", "自从周六", "周六开始就", "周三来的师傅", "周五交了三百".  Future: "by
# Wednesday", "can you come on Friday", "I'll be home Sunday", "周三之前能开好吗", "15号发工资了再交".
# In English the cue nearer the weekday wins ("I want to know what I used on Sat": past).
_CLAUSE_END = re.compile(r"[,.;!?，。；！？\n]")
_NOT_PAST_ED = (r"scheduled|planned|booked|needed|expected|supposed|required|arranged|confirmed|reserved|delayed"
                r"|postponed|interested|allowed|prepared|need|feed|seed|speed")
# a past verb at most three words before the weekday, or any "-ed" word at most four words before
# it ("spiked on", "topped up 50 yuan on", "got damaged in the storm on"), unless that is a
# participle (_PARTICIPLE_BEFORE_EN)
_PAST_BEFORE_EN = re.compile(
    r"\b(?:(?:since|came|went|was|were|happened|started|began|got|had|did|paid|called|reported|visited|left"
    r"|broke|stopped|died|failed|showed up|turned up|came by|dropped by|lost|saw|took|told|sent|gave|fell|blew"
    r"|burnt)\b(?:\s+[a-z']+){0,3}?"
    r"|(?P<ed>(?!(?:" + _NOT_PAST_ED + r")\b)[a-z]{2,}ed)(?:\s+[a-z'0-9]+){0,4}?)\s+$")
# a past verb right after the weekday, in its clause, with its subject or after "and": "On Sunday I
# topped up", "Saturday the power went out", "come Wednesday and never showed up" (this wins over
# a future word before it: what was to happen that day has happened or failed to)
_PAST_AFTER_EN = re.compile(
    r"^(?:\s+(?:morning|afternoon|evening|night))?\s+(?:and\s+|but\s+)?"
    r"(?:(?:i|we|he|she|they|it|someone|somebody|nobody|no one|(?:the|my|our|your|his|her|their)\s+[a-z]+)\s+)?"
    r"(?:never\s+|just\s+|already\s+|also\s+|then\s+|accidentally\s+)?"
    r"(?:came|went|was|were|happened|started|began|got|had|did|paid|called|reported|visited|left|broke|stopped"
    r"|died|failed|showed up|turned up|lost|saw|took|told|sent|gave|fell|blew|burnt|showed"
    r"|(?!(?:" + _NOT_PAST_ED + r")\b)[a-z]{2,}ed)\b")
# "need it fixed on", "will be installed on", "have them replaced by": a participle, not the past
_PARTICIPLE_BEFORE_EN = re.compile(r"\b(?:be|been|being|get|(?:need|needs|want|wants|get|have|has|like)\s+(?:it|them|this|that))\s+$")
# (not "can", "please", "帮我查": a polite request may ask about the past)
_FUTURE_EN = re.compile(r"\b(?:by|before|until|till|due|will|going to|gonna|shall|book|schedule|come|visit"
                        r"|planned|scheduled|upcoming|maintenance)\b|'ll\b")
_PAST_BEFORE_CN = re.compile(r"(?:自从|早在)$")  # not 从: "从周三改到下周一"
_PAST_AFTER_CN = re.compile(
    r"那次|那回|那天|(?:上午|下午|晚上|早上|中午|凌晨|夜里)?"
    r"(?:开始|以来|起就|就已经|已经|[^要会能想再将请帮吗前后]{0,4}?[了过](?![吗没])"
    r"|(?!(?:上午|下午|晚上|早上|中午|凌晨|夜里|之前|以前|之后|以后)的)[^要会能想再将请帮吗前后的]{1,4}的(?!话))")
_FUTURE_BEFORE_CN = re.compile(r"会|将|打算|计划|安排|预约|截止")
_THEN_CN = re.compile(r"了[^了过]{0,4}?[再才]")  # "15号发工资了再交", "周五发了工资再交": then
_FUTURE_AFTER_CN = re.compile(r"^[^了过]{0,3}?(?:会|将|要|想|能|可以|来得及|之前|以前|前|截止|到期|再)")


def _tense(text: str, start: int, end: int) -> str | None:
    """"past", "future" or None: what the words next to a date at ``text[start:end]`` (in its
    own clause) say about it."""
    low = text.lower()
    cut = [m.end() for m in _CLAUSE_END.finditer(low, 0, start)]
    before = low[cut[-1] if cut else 0:start]
    after_end = _CLAUSE_END.search(low, end)
    after = low[end:after_end.start() if after_end else len(low)]
    if before.isascii() and after.isascii():
        past = _PAST_BEFORE_EN.search(before)
        if past is not None and past.group("ed") and _PARTICIPLE_BEFORE_EN.search(before, 0, past.start()):
            past = None
        if _PAST_AFTER_EN.match(after):
            return "past"
        future = None
        for future in _FUTURE_EN.finditer(before):
            pass
        if future is not None and (past is None or future.start() >= past.start()):
            return "future"
        return "past" if past else None
    if _FUTURE_AFTER_CN.match(after) or _THEN_CN.search(after):
        return "future"
    if _PAST_BEFORE_CN.search(before) or _PAST_AFTER_CN.match(after):
        return "past"
    return "future" if _FUTURE_BEFORE_CN.search(before[-6:]) else None


# a day of the month alone ("20号", "the 20th"): the nearest such day, unless its clause says past
_BARE_DAY_RE = re.compile(rf"(?:\d{{1,2}}|{_CN}{{1,3}})[号日]|(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)")


# a holiday named without a year is the coming one; a request about the past moves it back a
# year unless its clause asks ahead ("元旦会停电吗", "any cut on New Year's Day?")
_ON_THAT_DAY_CN = re.compile(r"(?:那天|当天|这天|那日|当日|那一天|那晚|当晚)")
_HOLIDAY_AHEAD_RE = re.compile(r"会|将|要|吗|能|可以|打算|计划|安排|预约|有没有"
                               r"|\b(?:will|is there|are there|going to|any|can|could|planned|scheduled)\b")


def _clause(text: str, start: int, end: int) -> str:
    """The clause of ``text`` (between clause ends) that holds ``text[start:end]``."""
    cut = [m.end() for m in _CLAUSE_END.finditer(text, 0, start)]
    stop = _CLAUSE_END.search(text, end)
    return text[cut[-1] if cut else 0:stop.start() if stop else len(text)]


def toward_past(text: str, intent: str, entities: list[dict[str, Any]], ref: dt.date) -> None:
    """Move the bare weekdays among ``entities`` (of ``text``) that mean a day gone by to the
    latest such day not after ``ref``: where their own clause says so (``_tense``), or, where
    it says nothing, for a request about the past (``PAST_INTENTS``).  A bare day of the month
    in the future ("20号那次停电", read as the nearest 20th) moves a month back only where its
    clause says past; a holiday named without a year ("国庆节当天用电多少") a year back, as a
    weekday does, unless its clause asks ahead."""
    by_intent = intent in PAST_INTENTS and not (intent == "report_outage" and _ASKS_AHEAD_RE.search(text.lower()))
    for e in entities:
        if e["entity"] != "date":
            continue
        span = text[e["start"]:e["end"]].strip().lower()
        day = dt.date.fromisoformat(e["value"])
        if day <= ref:
            continue
        if _BARE_WEEKDAY_RE.fullmatch(span):
            tense = _tense(text, e["start"], e["end"])
            if tense == "past" or (tense is None and by_intent):
                e["value"] = (day - dt.timedelta(days=7)).isoformat()
        elif span in HOLIDAYS:
            # "双十一那天用了多少度": the words after "那天" say which way it goes
            a = _ON_THAT_DAY_CN.match(text, e["end"])
            tense = _tense(text, e["start"], a.end() if a else e["end"])
            if tense == "past" or (tense is None and intent in PAST_INTENTS
                                   and not _HOLIDAY_AHEAD_RE.search(_clause(text, e["start"], e["end"]).lower())):
                e["value"] = day.replace(year=day.year - 1).isoformat()
        elif _BARE_DAY_RE.fullmatch(span) and _tense(text, e["start"], e["end"]) == "past":
            y, mo = _add_months(day.year, day.month, -1)
            earlier = _safe_date(y, mo, day.day)
            if earlier is not None and earlier <= ref:
                e["value"] = earlier.isoformat()


# A bare month is the latest one gone by ("my January bill"), but the coming one where a change is
# to take effect then: "switch me to time-of-use pricing from January", "starting March", "until
# next February", "effective April"
_MONTH_AHEAD_BEFORE_EN = re.compile(
    r"(?:\b(?:starting|beginning|effective|as of|until|till|by|next|coming)\s+(?:from\s+|in\s+)?"
    r"|\b(?:switch|change|move|set|start|stop|cancel|transfer|begin|upgrade|put)\b[^.,;!?]*\bfrom\s+)$")


# an account or a mobile number with a month glued to it: "户号310023456711月" (a known length,
# ten digits for an account, eleven for a mobile, then the month's one or two digits and 月)
GLUED_MONTH_RE = re.compile(r"(?<![\d.])\d{11,13}(?=月)")


def _glued_month(t: str, s: int, e: int) -> int | None:
    """Where the number ``t[s:e]`` (digits only) followed by 月 ends and the month begins, or None."""
    digits = t[s:e]
    if not (digits.isdigit() and t.startswith("月", e)):
        return None
    head = 11 if _MOBILE_START.match(digits) else 10
    tail = digits[head:]
    if 1 <= len(tail) <= 2 and tail[0] != "0" and 1 <= int(tail) <= 12:
        return head
    return None


def _past_month(ref: dt.date, month: int) -> tuple[int, int]:
    """A bare month ("10月") means the latest such month not after the reference month."""
    return (ref.year, month) if month <= ref.month else (ref.year - 1, month)


class EntityExtractor:
    """Extracts the contract entities plus lookup-table entities (districts)."""

    def __init__(self, synonyms: dict[str, str] | None = None,
                 lookups: dict[str, list[str]] | None = None,
                 regexes: dict[str, list[str]] | None = None) -> None:
        self.synonyms = {k.lower(): v for k, v in (synonyms or {}).items()}
        self.lookup_res: list[tuple[str, re.Pattern[str]]] = []
        for name, values in (lookups or {}).items():
            # Shanghai's districts are read by intents.places (word boundaries, the river
            # 黄浦江 is no district); the lookup table and synonyms keep them for Rasa
            canon = {v for v in values if v not in places.NAMES}
            terms = {v.lower() for v in canon if v.strip()}
            terms |= {k for k, v in self.synonyms.items() if v in canon}
            if terms:
                alt = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
                flags = r"\b" if all(t.isascii() for t in terms) else ""
                self.lookup_res.append((name, re.compile(f"{flags}(?:{alt}){flags}")))
        self.extra_regexes: list[tuple[str, re.Pattern[str]]] = []
        for name, pats in (regexes or {}).items():
            if name in PRIORITY:
                continue  # built-in extractor is stricter than a bare pattern
            for p in pats:
                try:
                    self.extra_regexes.append((name, re.compile(p)))
                except re.error:
                    continue

    # --- candidates -------------------------------------------------------------------
    def _numbers(self, t: str, cues: _Cues, out: list[_Cand]) -> None:
        digit = cues.digit
        if not digit and not cues.latin and not cues.has(_NUMBERS_CUE):
            return
        for m in _scan(WO_RE, t, digit and cues.latin):
            out.append(_Cand("work_order_id", m.start(), m.end(), "WO" + re.sub(r"\D", "", m.group(1) or m.group(2))))
        for m in _scan(WO_CONTEXT_RE, t, digit and (cues.latin or cues.has(_WO_CUE))):
            if 1 <= int(m.group(3)) <= 12 and 1 <= int(m.group(4)) <= 31:
                out.append(_Cand("work_order_id", m.start(1), m.end(1), "WO" + re.sub(r"\D", "", m.group(1))))
        for m in _scan(WO_LONG_CONTEXT_RE, t, digit and (cues.latin or cues.has(_WO_CUE))):
            out.append(_Cand("work_order_id", m.start(1), m.end(1), "WO" + m.group(1).replace("-", "")))
        for m in _scan(PHONE_RE, t, digit):
            out.append(_Cand("phone_number", m.start(), m.end(), "".join(m.groups())))
        for m in _scan(LANDLINE_RE, t, digit):
            code, local = m.group(1) or m.group(2), m.group(3)
            if len(code) == 4 or len(local) == 8:  # 010 / 02x: eight digits
                out.append(_Cand("phone_number", m.start(), m.end(), code + local))
        # 10-13 digits, in one run or in groups ("3100 0000 02"); 11 starting 1[3-9] is a mobile
        for s, e, digits in (grouped_numbers(t, 10, 13) if digit else ()):
            head = _glued_month(t, s, e)
            if head:  # "户号310023456711月": the account, then the month (see _months)
                kind = "phone_number" if head == 11 else "account_number"
                out.append(_Cand(kind, s, s + head, digits[:head]))
                continue
            letters = _LETTERS_BEFORE_RE.search(t, max(0, s - 10), s)
            if letters and len(letters.group(0)) >= 2 and letters.group(0) not in _ACCOUNT_WORDS_EN:
                continue  # "SF1234567890", "GD20240315001": another kind of number (parcel, order)
            if len(digits) == 11 and _MOBILE_START.match(digits):
                if not any(c.entity == "phone_number" and c.start <= s and e <= c.end for c in out):
                    out.append(_Cand("phone_number", s, e, digits))
                continue
            out.append(_Cand("account_number", s, e, digits))
        # The first two need an Arabic number, the third a 元/块 after Chinese numerals.
        for rx, possible in zip(AMOUNT_RES, (digit, digit, cues.has(_AMOUNT_WORD))):
            for m in _scan(rx, t, possible):
                v = cn_to_number(m.group(1))
                if v is not None and 0 < v < 1e8:
                    out.append(_Cand("amount", m.start(), m.end(), round(v, 2)))
        for m in _scan(AMOUNT_VERB_CN_RE, t, cues.has(_PAY_CUE)):
            v = cn_to_number(m.group(1).replace(",", ""))
            if v is not None and 0 < v < 1e6 and not m.group(1).endswith("点"):  # "交了一点": a little
                out.append(_Cand("amount", m.start(1), m.end(1), round(v, 2)))
        for m in _scan(AMOUNT_MIXED_RE, t, digit):
            if m.group(2) or m.group(3):
                v = float(m.group(1)) * _MAGNITUDE.get(m.group(2) or "", 1)
                # Longer than the plain patterns' match, so it wins the overlap.
                out.append(_Cand("amount", m.start(), m.end(), round(v, 2)))
        # "12块5", "一块二毛三": longer than the plain "12块", so it wins the overlap too
        for m in _scan(AMOUNT_YUAN_JIAO_RE, t, cues.has(_AMOUNT_WORD)):
            if m.group(1)[0].isdigit() != m.group(3).isdigit():
                continue  # "充了100块一直没到账": 一 begins a word; tenths are written as the yuan are
            if m.group(0)[-1] == "一" and _WORD_AFTER_ONE_RE.match(t, m.end()):
                continue  # "两块一起交": 一起, not 两块一
            v = yuan_jiao_fen(m.group(1), m.group(3), m.group(4), zero=bool(m.group(2)))
            if v is not None and 0 < v < 1e6:
                out.append(_Cand("amount", m.start(), m.end(), v))
        for m in _scan(AMOUNT_JIAO_RE, t, cues.has(_JIAO_CUE)):
            v = yuan_jiao_fen(None, m.group(1), m.group(2) or m.group(3))
            if v is not None and v > 0:
                out.append(_Cand("amount", m.start(), m.end(), v))
        self._bare_amounts(t, cues, out)

    @staticmethod
    def _bare_amounts(t: str, cues: _Cues, out: list[_Cand]) -> None:
        """Sums written without a unit that a word of money next to them makes sums (see
        AMOUNT_NOUN_CN_RE and what follows it).  Overlaps with the unit patterns' matches are
        resolved by the caller (same value, the longer span wins)."""
        cn_qty = cues.has(_CN_MAGNITUDE_CUE)
        words = cues.latin and _EN_SUM_WORD_CUE.search(t) is not None
        if not (cues.digit or cn_qty or words):
            return
        money = _MONEY_CONTEXT_RE.search(t) is not None
        number = cues.digit or cn_qty
        en = cues.latin and (cues.digit or words)

        def add(m: re.Match[str]) -> None:
            raw = m.group(1)
            s, e = m.span(1)
            if raw.endswith("点") or _YEAR_MONTH_RE.fullmatch(raw):  # "一点" is "a little"; 2026.10 a month
                return
            if raw[0].isdigit():
                v = cn_to_number(raw[:-1].replace(",", "")) * 1000 if raw.endswith("k") else \
                    cn_to_number(raw.replace(",", ""))
            elif raw[0].isascii():
                v = en_words_to_number(raw)
            else:
                v = cn_to_number(raw)
            if v is not None and 0 < v < 1e6:
                out.append(_Cand("amount", s, e, round(float(v), 2)))

        for rx, possible in ((AMOUNT_NOUN_CN_RE, number and cues.has(_MONEY_NOUN_CN_CUE)),
                             (AMOUNT_WEAK_CN_RE, number and money and cues.has(_MONEY_WEAK_CN_CUE)),
                             (AMOUNT_COST_CN_RE, number and cues.has(_COST_CN_CUE)),
                             (AMOUNT_BEFORE_NOUN_CN_RE, number and cues.has(_BEFORE_NOUN_CN_CUE)),
                             (AMOUNT_VERB_EN_RE, en),
                             (AMOUNT_NOUN_EN_RE, en),
                             (AMOUNT_WEAK_EN_RE, en and money),
                             (AMOUNT_TAKEN_EN_RE, en),
                             (AMOUNT_BEFORE_NOUN_EN_RE, en and money),  # its nouns are money words
                             (AMOUNT_EACH_EN_RE, cues.digit and cues.latin and money)):
            for m in _scan(rx, t, possible):
                add(m)
        for m in _scan(AMOUNT_EARLIER_CN_RE, t, number and money and cues.has(_EARLIER_CUE)):
            add(m)
        for m in _scan(AMOUNT_BEFORE_DOC_CN_RE, t, number and cues.has(_DOC_CUE)):
            raw = m.group(1) or m.group(2)
            v = cn_to_number(raw)
            if v is not None and 0 < v < 1e6:
                out.append(_Cand("amount", *m.span(1 if m.group(1) else 2), round(v, 2)))
        # "1.5万", "1.2k": never a date (MD_NUM leaves a number with a magnitude after it)
        for m in _scan(AMOUNT_MAGNITUDE_RE, t, cues.digit and money):
            v = float(m.group(1)) * _MAGNITUDE_K[m.group(2)]
            if 0 < v < 1e8:
                out.append(_Cand("amount", m.start(), m.end(), round(v, 2)))
        for m in _scan(AMOUNT_DECIMAL_RE, t, cues.digit and money):
            a, b = m.group(1).split(".")
            if not (len(a) <= 2 and 1 <= int(a) <= 12 and 1 <= int(b) <= 31):  # 9.5, 12.10: dates
                add(m)

    def _dates(self, t: str, ref: dt.date, cues: _Cues, out: list[_Cand]) -> None:
        if not cues.digit and not cues.latin and not cues.has(_DATE_CN_CUE):
            return

        def add(m: re.Match[str], d: dt.date | None, span: tuple[int, int] | None = None) -> None:
            if d is not None:
                s, e = span or m.span()
                out.append(_Cand("date", s, e, d.isoformat()))

        for m in _scan(REL_DAY_CN, t, cues.has(_REL_DAY_CN_CUE)):
            add(m, ref + dt.timedelta(days=_REL_DAY_OFF[m.group(1).replace("後", "后")]))
        last: tuple[str, int] = ("", -1)  # the qualifier of the weekday before, where it ended
        workweek = [w.span() for w in WORKWEEK_RE.finditer(t)] if cues.has(_WEEKDAY_CN_CUE) or cues.latin else []
        for m in _scan(WEEKDAY_CN, t, cues.has(_WEEKDAY_CN_CUE)):
            if any(a <= m.start() and m.end() <= b for a, b in workweek):
                continue  # "周一到周五营业": the working week
            q = (m.group(1) or "").strip()
            if not q and last[0] and _ALTERNATIVE_GAP_RE.match(t[last[1]:m.start()]):
                q = last[0]  # "下周一或者周二": the second one is next week's too
            if not q and t[max(0, m.start() - 2):m.start()].endswith(("每", "每个")):
                continue  # "每周一", "每周3次": every week, not a date
            if m.group(2) in "1234567" and not q and _COUNT_AFTER_RE.match(t, m.end()):
                continue  # "周3天": a count, not a weekday
            q = _QUALIFIER_EN_CN.get(q, q)
            last = (q, m.end())
            add(m, _weekday(ref, q, _WD_CN[m.group(2)]))
        for m in _scan(WEEKEND_RE, t, cues.has(_WEEKEND_CUE) or (cues.latin and "weekend" in t)):
            q = m.group(1) or m.group(2)
            add(m, _weekday(ref, "" if q.startswith("coming") or q == "this coming" else q, 5))
        for m in _scan(ISO_DATE, t, cues.digit):
            add(m, _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
        day_first = cues.digit and DAY_FIRST_RE.search(t) is not None
        for m in _scan(COMPACT_DATE, t, cues.digit):
            if abs(int(m.group(1)) - ref.year) <= 5:
                add(m, _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
        for m in _scan(MDY_NUM, t, cues.digit):
            a, b = int(m.group(1)), int(m.group(2))
            day_month = a > 12 or (day_first and b <= 12)
            add(m, _safe_date(int(m.group(3)), b, a) if day_month else _safe_date(int(m.group(3)), a, b))
        for m in _scan(MD_CN, t, cues.has(_MONTH_CHAR)):
            mo, day = to_int(m.group(2)), to_int(m.group(3))
            if not mo or not day:
                continue
            year = _year_word(m.group(1), ref)
            add(m, _safe_date(year, mo, day) if year else _nearest_md(ref, mo, day))
        for m in _scan(MD_CN_BARE, t, cues.has(_MONTH_CHAR)):
            mo, day = to_int(m.group(1)), to_int(m.group(2))
            if mo and day and 1 <= mo <= 12 and 1 <= day <= 31:
                add(m, _nearest_md(ref, mo, day))
        for m in _scan(MD_NUM, t, cues.digit):
            if m.group(2) == "." and _READING_BEFORE_RE.search(t, max(0, m.start() - 12), m.start()):
                continue  # "电表显示12.09": a reading
            mo, day = int(m.group(1)), int(m.group(3))
            if day <= 12 and (mo > 12 and m.group(2) == "/" or day_first):  # 15/12: day/month, as in English
                mo, day = day, mo
            if 1 <= mo <= 12 and 1 <= day <= 31:
                add(m, _nearest_md(ref, mo, day))
        # "两天后", "3天以后", "三天前": counted from the reference date
        for m in _scan(DAYS_FROM_CN, t, cues.has(_DAYS_CUE)):
            n = to_int(m.group(1))
            if n and n <= 60:
                add(m, ref + dt.timedelta(days=-n if "前" in m.group(2) else n))
        for m in _scan(WEEKS_FROM_CN, t, cues.has(_WEEKDAY_CN_CUE)):
            n = to_int(m.group(1))
            if n and n <= 8:
                add(m, ref + dt.timedelta(days=-7 * n if "前" in m.group(2) else 7 * n))
        for m in _scan(MONTH_END_CN, t, cues.has(_MONTH_CHAR) and ("底" in t or "末" in t)):
            if m.group(3):  # "12月底": the nearest such month's end
                mo = to_int(m.group(3))
                if not mo or not 1 <= mo <= 12:
                    continue
                year = _year_word(m.group(2), ref)
                if year:
                    add(m, _safe_date(year, mo, calendar.monthrange(year, mo)[1]))
                else:
                    add(m, _nearest_md(ref, mo, calendar.monthrange(ref.year, mo)[1]))
                continue
            if not m.group(1) and m.start() and t[m.start() - 1] in "每个几":
                continue  # "每月底", "每个月底": a routine; "三个月底": no date
            y, mo = _add_months(ref.year, ref.month, _MONTH_END_OFF[(m.group(1) or "").replace("只", "个")])
            add(m, dt.date(y, mo, calendar.monthrange(y, mo)[1]))
        for m in _scan(MONTH_END_EN, t, cues.latin and "month" in t):
            y, mo = _add_months(ref.year, ref.month, {"next": 1, "last": -1}.get(m.group(1) or "", 0))
            add(m, dt.date(y, mo, calendar.monthrange(y, mo)[1]))
        for m in _scan(NTH_OF_MONTH_EN, t, cues.digit and cues.latin and "month" in t):
            y, mo = _add_months(ref.year, ref.month, {"next": 1, "last": -1}.get(m.group(2), 0))
            add(m, _safe_date(y, mo, int(m.group(1))))
        for m in _scan(REL_MONTH_DAY_CN, t, cues.has(_MONTH_CHAR)):
            y, mo = _add_months(ref.year, ref.month, _REL_MONTH_OFF[m.group(1)])
            day = to_int(m.group(2))
            if day:
                add(m, _safe_date(y, mo, day))
        for m in _scan(WEEKDAY_NEXT_WEEK_EN, t, cues.latin):
            add(m, _weekday(ref, "next", _WD_EN[m.group(1)]))
        for m in _scan(HOLIDAY_RE, t, cues.latin or cues.has(_HOLIDAY_CUE)):
            mo, day = HOLIDAYS[m.group("h")]
            d = dt.date(ref.year, mo, day)
            if m.group("y"):
                d = dt.date(_year_word(m.group("y"), ref) or ref.year, mo, day)
            elif m.group("q") == "last":  # the latest one gone by
                d = d if d < ref else dt.date(ref.year - 1, mo, day)
            elif m.group("q") != "this" and d < ref:
                d = dt.date(ref.year + 1, mo, day)
            add(m, d)
        for m in _scan(NTH_EN, t, cues.latin):
            day = int(m.group(1))
            if 1 <= day <= 31:
                add(m, _nearest_day(ref, day))
        for m in _scan(DAY_ONLY_CN, t, cues.has(_DAY_CHAR)):
            day = to_int(m.group(1))
            if day and 1 <= day <= 31:
                add(m, _nearest_day(ref, day))
        for m in _scan(REL_DAY_EN, t, cues.latin):
            off = _rel_day_en_offset(m.group(1))
            if off is not None:
                add(m, ref + dt.timedelta(days=off), m.span(1))
        for m in _scan(DAYS_FROM_EN, t, cues.latin):
            w, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            n = int(w) if w.isdigit() else _EN_COUNT[w]
            n *= 7 if unit.startswith("week") else 1
            if 0 < n <= 60:
                add(m, ref + dt.timedelta(days=-n if m.group(5) == "ago" else n))
        for m in _scan(WEEKDAY_PINYIN, t, cues.latin):
            q = (m.group(1) or "").replace(" ", "")
            add(m, _weekday(ref, _QUALIFIER_PINYIN.get(q, ""), _WD_PINYIN[m.group(2)]))
        for m in _scan(NEXT_WEEK_WEEKDAY_EN, t, cues.latin):
            add(m, _weekday(ref, "next", _WD_EN[m.group(1)]))
        for m in _scan(MD_EN, t, cues.latin):
            mon = m.group(1) or m.group(4)
            day = int(m.group(2) or m.group(3))
            mo = _MONTH_EN.get(mon)
            if mo and 1 <= day <= 31:
                year = int(m.group(5)) if m.group(5) else None
                first = _safe_date(year, mo, day) if year else _nearest_md(ref, mo, day)
                add(m, first)
                tail = _RANGE_TAIL_EN.match(t, m.end())
                if first is not None and tail and day < int(tail.group(1)) <= 31:
                    # "from Dec 10 to 12": the end of the range is a day of the same month
                    add(tail, _safe_date(first.year, first.month, int(tail.group(1))), tail.span(1))
        for m in _scan(ORDINAL_DAY_EN, t, cues.latin):
            day = int(m.group(1))
            if 1 <= day <= 31:
                add(m, _nearest_day(ref, day))
        last = ("", -1)
        explicit = [c for c in out if c.entity == "date"]
        for m in _scan(WEEKDAY_EN, t, cues.latin):
            w = m.group(2)
            if any(a <= m.start() and m.end() <= b for a, b in workweek):
                continue  # "open Monday to Friday"
            if not m.group(1) and _EVERY_BEFORE_EN.search(t, 0, m.start()):
                continue  # "every Monday": a routine, not a date
            named = _weekday(ref, m.group(1) or "", _WD_EN[w]).isoformat()
            if any(c.start <= m.end() + 5 and m.start() <= c.end + 2 and c.value != named and c.end - c.start > 2
                   for c in explicit if not (c.start < m.end() and m.start() < c.end)):
                continue  # "Wednesday 16th", "Thu 10 Dec": the day the customer wrote out wins
            if len(w) <= 3 and w in ("sun", "sat", "wed", "mon") and not m.group(1) \
                    and not _PART_OF_DAY_EN.match(t, m.end()) \
                    and not _DAY_ABBR_BEFORE_EN.search(t, max(0, m.start() - 12), m.start()) \
                    and not _DAY_ABBR_AFTER_EN.match(t, m.end()):
                continue  # too ambiguous as bare abbreviations, unless "wed afternoon", "on Sat?"
            q = m.group(1) or ""
            if not q and last[0] and _ALTERNATIVE_GAP_RE.match(t[last[1]:m.start()]):
                q = last[0]  # "next Monday or Tuesday"
            last = (q, m.end())
            add(m, _weekday(ref, q, _WD_EN[w]))

    def _months(self, t: str, ref: dt.date, cues: _Cues, out: list[_Cand]) -> None:
        if not cues.digit and not cues.latin and not cues.has(_MONTH_CHAR):
            return

        def add(m: re.Match[str], y: int, mo: int) -> None:
            if 1 <= mo <= 12 and 1900 < y < 2200:
                out.append(_Cand("month", m.start(), m.end(), f"{y:04d}-{mo:02d}"))

        for m in _scan(REL_MONTH_CN, t, cues.has(_MONTH_CHAR)):
            add(m, *_add_months(ref.year, ref.month, _REL_MONTH_OFF[m.group(1)]))
        for m in _scan(MONTH_CN, t, cues.has(_MONTH_CHAR)):
            mo = to_int(m.group(2))
            if not mo:
                continue
            year = _year_word(m.group(1), ref)
            add(m, *((year, mo) if year else _past_month(ref, mo)))
        for m in _scan(GLUED_MONTH_RE, t, cues.digit and cues.has(_MONTH_CHAR)):
            head = _glued_month(t, m.start(), m.end())
            if head:
                out.append(_Cand("month", m.start() + head, m.end() + 1,
                                 "%04d-%02d" % _past_month(ref, int(m.group(0)[head:]))))
        for m in _scan(ISO_MONTH, t, cues.digit):
            add(m, int(m.group(1)), int(m.group(2)))
        for m in _scan(MONTHS_AGO_CN, t, cues.has(_MONTH_CHAR)):
            n = to_int(m.group(1))
            if n and n <= 24:
                add(m, *_add_months(ref.year, ref.month, -n))
        for m in _scan(MONTH_YEAR_NUM, t, cues.digit):
            add(m, int(m.group(2)), int(m.group(1)))
        for m in _scan(REL_MONTH_EN, t, cues.latin):
            w = m.group(1)
            off = -2 if "before last" in w else -1 if w in ("last month", "previous month", "past month") \
                else 1 if w == "next month" else 0
            add(m, *_add_months(ref.year, ref.month, off))
        for m in _scan(MONTH_EN, t, cues.latin):
            name = m.group(2)
            if name in ("may", "mar", "jun", "jan", "dec", "oct", "sep", "aug", "apr", "nov", "feb", "jul") \
                    and not (m.group(1) or m.group(3)) and len(name) == 3 and name != "may":
                pass
            if name == "may" and not (m.group(1) or m.group(3)):
                continue  # modal verb far more often than the month
            mo = _MONTH_EN[name]
            if m.group(3):
                add(m, int(m.group(3)), mo)
            elif m.group(4):  # "December last year"
                add(m, ref.year - (m.group(4) == "last year"), mo)
            elif m.group(1) == "last":
                add(m, *((ref.year, mo) if mo < ref.month else (ref.year - 1, mo)))
            elif m.group(1) == "this":
                add(m, ref.year, mo)
            elif _MONTH_AHEAD_BEFORE_EN.search(t, max(0, m.start() - 60), m.start()):
                add(m, *((ref.year, mo) if mo >= ref.month else (ref.year + 1, mo)))  # the coming one
            else:
                add(m, *_past_month(ref, mo))

    def _lookups(self, t: str, out: list[_Cand]) -> None:
        simp = to_simplified(t)
        scan = simp if len(simp) == len(t) else t
        for name, rx in self.lookup_res:
            for m in rx.finditer(scan):
                out.append(_Cand(name, m.start(), m.end(), m.group(0), LOOKUP_EXTRACTOR))
        # Shanghai's districts in every spelling (intents.places), valued as the core names them
        for s, e, name in places.find(scan):
            out.append(_Cand("district", s, e, name, LOOKUP_EXTRACTOR))
        for name, rx in self.extra_regexes:
            for m in rx.finditer(t):
                out.append(_Cand(name, m.start(), m.end(), m.group(0)))

    def _addresses(self, t: str, cues: _Cues, out: list[_Cand]) -> None:
        for m in _scan(EN_ADDRESS_RE, t, cues.latin and _EN_STREET_WORD_RE.search(t) is not None):
            out.append(_Cand("address", m.start(), m.end(), m.group(0).rstrip(".")))
        ran_on: tuple[int, int] | None = None  # a name that runs on into the next match ("青村|镇…", "石化街道|卫零路…")
        for m in _scan(ADDRESS_RE, t, cues.has(_ADDRESS_CUE)):
            s, e = m.span()
            if ran_on is not None and ran_on[1] == s:
                s = ran_on[0]
            ran_on = None
            frag = t[s:e]
            p = _ADDR_PREFIX.match(frag)
            if p and p.end() < len(frag) - 1:
                s += p.end()
            district_at = next((ds for ds, _de, _n in places.find(t[s:e])), None)
            if district_at:  # "房东说浦东新区…", "投诉浦东新区…": the place starts at its district
                s += district_at
                if t[max(0, s - 3):s] == "上海市" or t[max(0, s - 2):s] == "上海":
                    s -= 3 if t[max(0, s - 3):s] == "上海市" else 2
            if _NOT_A_PLACE.search(t[s:e]):  # "我们整个小区", "小区路灯": words, not a name
                # "…停电了碧波路88弄5号楼" said in one breath: the place after the last such word
                cut = max((i for i, ch in enumerate(t[s:e]) if ch in _RUN_ON_CHARS), default=-1)
                if cut < 0 or _NOT_A_PLACE.search(t[s + cut + 1:e]) or not re.search(r"\d", t[s + cut + 1:e]):
                    continue
                s += cut + 1
            if e - s >= 3 and re.search(r"\d|小区|花园|新村|公寓|大厦|家园|苑", t[s:e]):
                out.append(_Cand("address", s, e, t[s:e]))
            elif self._district_road(t, s, e, out):
                # "浦东新区碧波路": a road named after a known district is a place (the outage
                # lookup matches streets), where a bare "…的路" is just a word.
                out.append(_Cand("address", s, e, t[s:e]))
            else:
                ran_on = (s, e)

    @staticmethod
    def _district_road(t: str, s: int, e: int, found: list[_Cand]) -> bool:
        if not re.search(r"(?:路|街|大道|公路)$", t[s:e]):
            return False
        for c in found:
            if c.entity == "district" and c.start == s and 2 <= e - c.end <= 8:
                name = re.sub(r"(?:路|街|大道|公路)$", "", t[c.end:e])
                return len(name) >= 2 and not re.search(r"[^\u4e00-\u9fa5]|[的这那条个些哪每]", name)
        return False

    # --- public -----------------------------------------------------------------------
    def extract(self, text: str, reference_date: dt.date | None = None,
                cues: _Cues | None = None) -> list[dict[str, Any]]:
        """Entities of ``text``; ``cues`` overrides the pre-check (``ALL_CUES``: run all)."""
        if not text:
            return []
        ref = reference_date or dt.date.today()
        # bounds worst-case cost on pathological input; digits spelled out in Chinese or
        # written full-width become ASCII digits, one character for one (offsets stay valid)
        t = digits_view(normalize_chars(text[:2000]))
        if cues is None:
            cues = cues_of(t)
        cands: list[_Cand] = []
        self._numbers(t, cues, cands)
        self._dates(t, ref, cues, cands)
        self._months(t, ref, cues, cands)
        self._lookups(t, cands)
        self._addresses(t, cues, cands)
        # Resolve overlaps: higher priority first, then longer span.
        cands.sort(key=lambda c: (PRIORITY.get(c.entity, 5), -(c.end - c.start), c.start))
        taken: list[_Cand] = []
        for c in cands:
            if c.entity == "address":
                # An address may contain a district; it must not swallow numbers/dates.
                if any(o.start < c.end and c.start < o.end and o.entity != "district" for o in taken):
                    continue
            elif any(o.start < c.end and c.start < o.end for o in taken):
                continue
            taken.append(c)
        taken.sort(key=lambda c: c.start)
        result = []
        for c in taken:
            value = c.value
            if isinstance(value, str) and c.entity not in ("date", "month"):
                value = self.synonyms.get(value.lower(), value)
            if c.entity == "address" and value.isascii():  # "12 Mudanjiang Road" as written
                value = text[c.start:c.end].rstrip(".")
            result.append({"entity": c.entity, "value": value, "start": c.start,
                           "end": c.end, "extractor": c.extractor})
        return result
