"""Domain words as customers mistype them: homophone typos, pinyin and a few Shanghainese words,
read as the word.

Chinese input methods turn a slip into a homophone ("停点" for 停电, "插坐" for 插座, "点费" for
电费), and some customers type pinyin ("tingdian le", "dian fei duoshao"). The classifier's
n-grams only know the spellings in the training data, so before featurisation the usual
variants of the domain's key words are replaced by the word (``canonical``), in training and
at parse time alike (``intents.features``). The list is of words, not of sentences: a new
sentence with a known slip is understood as its correct spelling.
"""

from __future__ import annotations

import re

from .pinyin import PinyinReader, syllables

# canonical word -> typos (Chinese homophones / near-homophones) and pinyin
VARIANTS: dict[str, tuple[str, ...]] = {
    "电费": ("点费", "电非", "店费", "电废", "电肥", "垫费", "dianfei", "dian fei"),
    "停电": ("停点", "停殿", "挺电", "亭电", "tingdian", "ting dian"),
    "没电": ("没店", "meidian", "mei dian"),
    "断电": ("duandian", "duan dian"),
    "插座": ("插坐", "插做", "差座", "chazuo", "cha zuo"),
    "跳闸": ("跳匝", "跳扎", "跳阀", "跳炸", "tiaozha", "tiao zha"),
    "电表": ("电标", "点表", "店表", "dianbiao", "dian biao"),
    "电线": ("电限", "dianxian", "dian xian"),
    "电价": ("电加", "点价", "电假", "dianjia", "dian jia"),
    "缴费": ("交废", "缴废", "jiaofei", "jiao fei"),
    "交电费": ("叫电费", "交点费", "jiaodianfei", "jiao dian fei"),
    "充电桩": ("充电装", "充电庄", "充电状", "冲电桩", "充点桩", "chongdianzhuang", "chong dian zhuang"),
    "光伏": ("光扶", "光服", "光浮", "guangfu", "guang fu"),
    "并网": ("并往", "bingwang", "bing wang"),
    "报修": ("抱修", "报休", "baoxiu", "bao xiu"),
    "维修": ("维休", "weixiu", "wei xiu"),
    "投诉": ("投述", "头诉", "投素", "tousu", "tou su"),
    "举报": ("举抱", "jubao", "ju bao"),
    "窃电": ("切电", "qiedian", "qie dian"),
    "偷电": ("toudian", "tou dian"),
    "人工": ("人共", "人公", "rengong", "ren gong"),
    "客服": ("kefu", "ke fu"),
    "发票": ("发漂", "法票", "fapiao", "fa piao"),
    "工单": ("工但", "gongdan", "gong dan"),
    "进度": ("近度", "jindu", "jin du"),
    "绑定": ("帮定", "绑订", "bangding", "bang ding"),
    "解绑": ("jiebang", "jie bang"),
    "预约": ("预月", "预越", "yuyue", "yu yue"),
    "营业厅": ("营业听", "yingyeting", "ying ye ting"),
    "订阅": ("定阅", "dingyue", "ding yue"),
    "取消": ("quxiao", "qu xiao"),
    "到账": ("daozhang", "dao zhang"),
    "支付": ("zhifu", "zhi fu"),
    "多少": ("duoshao", "duo shao"),
    "话费": ("huafei", "hua fei"),
    "物业": ("wuye", "wu ye"),
    "快递": ("kuaidi", "kuai di"),
    "天气": ("tianqi", "tian qi"),
    "通知": ("tongzhi", "tong zhi"),  # "tongzhi 开通": a keyword in pinyin inside a Chinese message
    "推送": ("tuisong", "tui song"),
    "退订": ("退定", "tuiding", "tui ding"),
    "过户": ("过护", "guohu", "guo hu"),
    "更名": ("gengming", "geng ming"),
    "销户": ("消户", "xiaohu", "xiao hu"),
    "新装": ("xinzhuang", "xin zhuang"),
    "增容": ("增榕", "增荣", "zengrong", "zeng rong"),
    "报装": ("抱装", "baozhuang", "bao zhuang"),
    "户号": ("护号", "huhao", "hu hao"),
    "用电量": ("用点量", "yongdianliang", "yong dian liang"),
    "建议": ("建意", "建义", "jianyi", "jian yi"),
    "表扬": ("表杨", "biaoyang", "biao yang"),
    "谢谢": ("xiexie", "xie xie"),
    "你好": ("nihao", "ni hao", "尼好"),
    "再见": ("在见", "zaijian", "zai jian"),
    "欠费": ("欠废", "qianfei", "qian fei"),
    "账单": ("帐单", "账但", "zhangdan", "zhang dan"),
    "余额": ("于额", "yue e"),
    "退费": ("tuifei", "tui fei"),
    "峰谷": ("蜂谷", "风谷", "fenggu", "feng gu"),
    "阶梯": ("jieti", "jie ti"),
    "抢修": ("强修", "qiangxiu", "qiang xiu"),
    "电压": ("点压", "dianya", "dian ya"),
    # English slips of the domain's key words ("bil for march?", "tarrif?"): the English n-grams
    # of a short message are nearly all in the one word, so a slip leaves nothing to go by
    "bill": ("bil",),
    "tariff": ("tarrif", "tarif", "tarriff", "tarrf"),
    "electricity": ("electricty", "eletricity", "electrcity", "electrisity"),
    # Shanghainese as customers here write it: 勿要/覅 (don't want), 侬 (you), 阿拉 (we), 几钿
    # (how much money), 屋里厢 (at home) -- read as the Mandarin words the data is written in
    "不": ("勿", "弗"),
    "不要": ("覅",),
    "你": ("侬",),
    "我们": ("阿拉",),
    "多少钱": ("几钿",),
    "家里": ("屋里厢",),
}

_LATIN = re.compile(r"[a-z]")


_TO_WORD: dict[str, str] = {}
for _word, _variants in VARIANTS.items():
    for _v in _variants:
        _TO_WORD[re.sub(r"\s+", "", _v)] = _word
_ALL = sorted((v for vs in VARIANTS.values() for v in vs), key=len, reverse=True)
# Two patterns, so that ``re`` can skip ahead: every Han variant starts with a literal (the
# engine jumps to the positions where one of their first characters occurs), and the pinyin
# variants, whole words with any spacing between the syllables, are only tried when a message
# has Latin letters. One alternation with a look-behind in front of the pinyin was 15x slower.
_HAN_RE = re.compile("|".join(re.escape(v) for v in _ALL if not _LATIN.search(v)))
_PINYIN_RE = re.compile(r"(?<![a-z])(?:" + "|".join(
    r"\s*".join(re.escape(p) for p in v.split()) for v in _ALL if _LATIN.search(v)) + r")(?![a-z])")
_CUE = frozenset(v[0] for v in _ALL)


def _to_word(match: re.Match[str]) -> str:
    return _TO_WORD.get(re.sub(r"\s+", "", match.group(0)), match.group(0))


def canonical(text: str, reader: PinyinReader | None = None) -> str:
    """``text`` (normalised: lower case, simplified) with known slips replaced by the word; a
    message written in pinyin is read as Chinese by the model's ``reader`` (without one, only
    its everyday words are, from ``WORDS``)."""
    pinyin = _in_pinyin(text)
    if not _CUE.isdisjoint(text):
        text = _HAN_RE.sub(_to_word, text)
        if _LATIN.search(text):
            text = _PINYIN_RE.sub(_to_word, text)
    if pinyin:
        if reader is not None:
            text = reader.read(text)
        text = _LATIN_WORD.sub(lambda m: WORDS.get(m.group(0), m.group(0)), text)
        text = _HAN_SPACE.sub("", text)
    return text


# --- whole messages in pinyin ("jia li ting dian le", "wo yao cha dianfei") ---------------------
# In a message written in pinyin the everyday words are pinyin too; they are read as Chinese
# only when (nearly) every Latin word of a message without Han characters is pinyin, so an
# English "you" or "a" stays English.
WORDS: dict[str, str] = {
    "wo": "我", "wode": "我的", "women": "我们", "ni": "你", "nin": "您", "jia": "家", "jiali": "家里",
    "wojia": "我家", "de": "的", "le": "了", "ma": "吗", "ne": "呢", "shi": "是", "bu": "不", "mei": "没",
    "meiyou": "没有", "you": "有", "yao": "要", "xiang": "想", "zenme": "怎么", "zenmeban": "怎么办",
    "duoshao": "多少", "shenme": "什么", "shihou": "时候", "mingtian": "明天", "jintian": "今天",
    "zuotian": "昨天", "shanggeyue": "上个月", "zhegeyue": "这个月", "qingwen": "请问", "bangwo": "帮我",
    "cha": "查", "chaxun": "查询", "jiao": "交", "hao": "好", "haode": "好的", "dui": "对", "duide": "对的",
    "keyi": "可以", "buyao": "不要", "buyong": "不用", "bushi": "不是", "huai": "坏", "huaile": "坏了",
    "maoyan": "冒烟", "zhuan": "转", "kaitong": "开通", "quxiao": "取消", "tongzhi": "通知",
    "duanxin": "短信", "tixing": "提醒", "huifu": "恢复", "laidian": "来电", "yongdian": "用电",
    "dianliang": "电量", "xiaoqu": "小区", "zhengge": "整个", "weishenme": "为什么", "gui": "贵",
    "tai": "太", "jidian": "几点", "zai": "在", "nali": "哪里", "nar": "哪儿", "shenqing": "申请",
    "banli": "办理", "anzhuang": "安装", "liucheng": "流程", "chongzhi": "充值", "zhifubao": "支付宝",
    "weixin": "微信", "kaipiao": "开票", "shifu": "师傅", "dian": "电", "fei": "费", "biao": "表",
    "qian": "钱", "xiexie": "谢谢", "zaijian": "再见", "baibai": "拜拜", "nihao": "你好", "renne": "人呢",
    "ren": "人", "li": "里", "ting": "停", "kuai": "快", "dianhua": "电话", "shouji": "手机", "haoma": "号码", "dizhi": "地址",
    "yige": "一个", "yixia": "一下", "gei": "给", "lai": "来", "qu": "去", "hai": "还", "yijing": "已经",
    "zhe": "这", "na": "那", "ge": "个", "ji": "几", "tian": "天", "yue": "月", "xiaoshi": "小时",
    # the other utilities and "zen me" split in two ("shui fei zen me jiao"): a water or gas
    # question in pinyin must read as one, which is out of scope, not as a bare "费 … 交"
    "zen": "怎", "me": "么", "shui": "水", "shuifei": "水费", "ranqi": "燃气", "meiqi": "煤气",
    "tianranqi": "天然气",
}
_LATIN_WORD = re.compile(r"[a-z]+")
_HAN = re.compile("[\u4e00-\u9fff]")
_HAN_SPACE = re.compile("(?<=[\u4e00-\u9fff]) +(?=[\u4e00-\u9fff])")


def _in_pinyin(text: str) -> bool:
    """Whether a message without Han characters is written in pinyin: (nearly) every Latin word
    of it splits into pinyin syllables, so an English "you" or "a" stays English."""
    if _HAN.search(text):
        return False
    words = _LATIN_WORD.findall(text)
    if len(words) < 2:
        return False
    allowed = 0.2 * len(words)  # words that are not pinyin
    for word in words:
        if syllables(word) is None:
            allowed -= 1
            if allowed < 0:
                return False
    return True
