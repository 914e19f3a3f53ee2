"""Signals in a customer's words that steer the dialogue before (or besides) the classifier.

The intent classifier answers "what does the customer want"; these patterns answer questions
it is weak at or must never miss: a hazard (a fallen wire, a burning smell) preempts every
request, an angry complaint goes to an agent at once, "算了" cancels whatever form is open,
"匿名" is a violation report without a callback number. They run on the message as typed
(case-insensitive), are cheap, and are explainable in a review — which is why they are rules.
"""

from __future__ import annotations

import re

from .normalize import normalize_chars
from .numbers import digits_view, english_digits
from .slots import last4

HAZARD_RE = re.compile(
    r"电线断|断线|掉下来|断落|冒火|着火|起火|火花|打火|冒烟|烧焦|焦糊|糊味|焦味|烧黑|烧糊|烧化|熔化|触电|电到人|爆炸|"
    r"电线杆倒|线杆倒|杆子倒|电线垂|垂下来|电线裸露|裸露的电线|电线露在外面|"
    r"电线[^，。,.!！?？]{0,6}(?:压断|砸断|刮断)|(?:电线|线)[^，。,.!！?？]{0,4}搭在(?:人行道|路上|地上|马路)|"
    r"(?:配电箱|电表箱|电箱|变压器|开关箱|配电房|电闸)[^，。,.!！?？]{0,8}(?:进水|泡水|泡在水|被水淹|淹了|浸水)|"
    r"\bflood\w*\b.{0,25}\b(?:meter|distribution|electrical|fuse) (?:box|room|panel|cabinet)|"
    r"\b(?:meter|distribution|electrical|fuse) (?:box|room|panel|cabinet)\b.{0,25}\b(?:flooded|under water|in water|submerged)|"
    r"树[^，。,.!！?？]{0,4}(?:倒|压|砸|断)[^，。,.!！?？]{0,6}(?:电线|线路|电缆)|电线[^，。,.!！?？]{0,4}(?:耷拉|碰到地|拖在地上)|"
    r"\btree (?:branch )?(?:has )?(?:fell|fallen|came down|come down|down|leaning|lying) (?:on|onto|across) (?:the |a )?(?:power |electric |overhead )?(?:line|wire|cable)|"
    r"\b(?:line|wire|cable)s? (?:is |are )?(?:hanging|dangling|sagging) (?:\w+ )?(?:low|down)\b|\bexposed (?:live )?wires?\b|\bwires? (?:sticking|hanging|poking) out\b|"
    r"火星|burning smell|burning (?:plastic|rubber)|smells? (?:like |of )?burn|spark|fire|smok(?:e|ing|y)|electrocut|fallen (?:power )?(?:wire|line)|live wire|wire (?:is )?down|"
    r"(?:line|wire|cable|pole)s? (?:is |are |has |have |had )?(?:down|hanging low|fell|fallen|came down|come down|snapped|broken)\b|"
    r"\bdowned (?:power )?(?:line|wire|cable)|(?:wire|line|cable)s? (?:is |are )?(?:lying |hanging )?(?:on|across) the (?:road|ground|street|pavement)",
    re.I,
)
ANGRY_RE = re.compile(
    r"[!！]{2,}|太差|垃圾|气死|什么破|无能|不负责|第[二三四五]次|忍无可忍|受够|骂|媒体|曝光|(?<!\d)12345(?!\d)|"
    r"terrible|worst|ridiculous|unacceptable|furious|angry|disgusting|useless",
    re.I,
)
CANCEL_RE = re.compile(r"^\s*(算了|取消|不办了|不用了|不要了|退出|cancel|stop|never ?mind|nvm|forget it)\s*[。.!！]?\s*$", re.I)
# "算了", "不用你们再登记了", "no, don't submit", "never mind, I'll ask my landlord": the customer
# leaves what was being asked (a form, a confirmation, an offer) — at the start of the message
# (after "等等"/"wait"/"actually"), or a refusal of the thing itself anywhere in it
_DECLINE_START_RE = re.compile(
    r"^\s*(?:(?:等等|等一下|等下|哦|噢|呃|额|嗯|唉|哎|那|wait|oh|hmm|um|actually|ah|well|omg|oops|sorry|lol|haha)[，,。.!！\s]*)*"
    r"(?:算了|不用|不要了|不要提交|不要登记|不必|不需要|不了|不办|不约|不报|不绑|不交|不开|不销|不申请|不登记|不订|"
    r"取消|先不|暂时不|还是不|还是算了|还是留着|不对|否(?:[，,。.\s]|$)|"
    r"no(?:pe)?\b(?!\.?\s*\d|\s+(?:power|electricity|lights?|one|idea|bill|signal|hot|water|supply))|nah\b|never ?mind|nvm\b|"
    r"cancel|forget (?:it|that|about it)|not now|not yet|don'?t (?:bother|need|want|file|submit|bind|book|pay|register))",
    re.I,
)
_DECLINE_ANY_RE = re.compile(
    r"不用(?:你们|您|再|帮我|给我)*(?:登记|报|提交|派|弄|办|记录|申请|预约|绑|交|订阅|处理)|"
    r"不(?:报|约|办|弄|申请|绑|交|订阅|销|举报|登记|提交|投诉|报修|预约)了|先不(?:要|用|申请|提交|报|办|约|交|投诉|登记|订|绑)|"
    r"还是(?:算了|不要|不用|留着)|"
    r"暂时不|不想(?:办|约|交|报|登记)了|再等等|等等看|先等等|那我等着|我再等|先自己(?:找|看|弄|处理)|自己找(?:个)?电工|"
    r"没事了|没事儿了|虚惊一场|是隔壁在|搞错了不是|"
    # a deferral: "等发工资了再交吧", "等房产证下来再办", "先别登记", "我先去问问支付宝", "let me first check"
    r"(?:^|[，,。.!！\s])算了(?!.{0,4}还是)|等.{1,10}再(?:交|办|说|弄|申请|来|登记|报|订)|先别|回头再|改天再|再想想|考虑一下|"
    r"我先(?:去)?(?:问问|问一下|找找|看看|检查)|我再(?:看看|查查|想想|考虑)|回头(?:我)?(?:问问|再问)|"
    r"\bi'?ll (?:talk|speak|check|ask)\b.{0,30}\bfirst\b|\bi'?ll think about it\b|"
    r"let me (?:first )?(?:check|ask|think|talk)|i'?ll (?:come back|get back|think about it)|come back later|"
    r"i'?ll wait|wait and see|false alarm|it'?s (?:fine|ok|okay) now|all good now|"
    r"i'?ll (?:get|call|find) (?:an |my )?(?:electrician|landlord)|my landlord will|"
    r"don'?t (?:file|submit|bind|register|book|need to|want to) |do not (?:file|submit|register)|"
    r"no need to (?!(?:contact|call|phone|ring|reach) (?:me|us))|"
    r"never ?mind|forget (?:it|that)|cancel (?:it|that|this)|\bcancel\W*(?:for now|please)?\W*$|not now|"
    r"i'?ll (?:do|pay|call|go|ask|check) [^.]{0,30}"
    r"(?:later|myself|first|another time|some other time)",
    re.I,
)
# "哦不对，我是要报修", "actually forget that. is Xuhui…": the customer corrects what they asked
_CORRECTS_RE = re.compile(
    r"^\s*(?:(?:哦|噢|呃|额|啊)[，,\s]*)?(?:不对|不是|搞错了|说错了|弄错了|我是要|我是想)|"
    r"^\s*(?:actually|sorry,? i meant|no wait|wait,? no|oh,? no)\b|forget (?:it|that)\b", re.I)
# "是的", "对，提交", "yes please", "go ahead": a yes to the question just asked ("对了" is not one,
# nor "是不是...")
_AFFIRM_RE = re.compile(
    r"^\s*(?:嗯+|恩|哦|噢)?[，,\s]*(?:是(?!不|否)|对(?!了|不)|好(?!像)|行|可以|没问题|没错|确认|确定|提交|要的|需要|同意|ok\b|okay|"
    r"yes|yep|yeah|yup|sure|confirm|correct|right\b|go ahead|please do|do it|submit|absolutely|of course|"
    r"(?:please )?(?:send|email|e-mail|mail) (?:it|them) (?:to me|over)|发给我|发我)",
    re.I,
)
# "就是登记的地址", "my registered address": the address on the customer's account
_REGISTERED_ADDRESS_RE = re.compile(r"登记的地址|注册的地址|户号的地址|登记地址|原地址|registered address|address on (?:the|my) account", re.I)
_REGISTERED_PHONE_RE = re.compile(
    r"登记的(?:电话|手机|号码)|(?:电话|手机|号码)(?:也)?(?:就)?(?:用|是)?登记的|就是这个(?:手机|号码|电话)|这个手机号|"
    r"registered (?:phone|number|mobile)|this (?:phone|number)|same number|use my (?:registered )?(?:address and )?phone",
    re.I,
)
# what an address looks like: a road, a lane, a building number, a district...
_ADDRESS_RE = re.compile(
    r"[路街巷村镇乡栋幢室]|\d+\s*(?:号|楼|层|弄)|小区|大道|公路|新区|[\u4e00-\u9fa5]{1,4}区|"
    r"\b(?:road|rd|street|st|avenue|ave|lane|ln|boulevard|blvd|highway|room|building|bldg|block|floor|district|"
    r"village|town|no\.|stairwell|community|estate)\b",
    re.I,
)
# pieces of a message that are not the address: a phone number and the words introducing it
_NOT_ADDRESS_PART_RE = re.compile(
    r"(?:联系)?(?:电话|手机|号码|phone|tel|mobile|call me on|my number is)[^，,;；。]*|(?:\+?86)?1[3-9]\d(?:[\s-]?\d){8}", re.I)
_ADDRESS_LEAD_RE = re.compile(r"^(?:(?:我的|我家|the )?(?:地址|位置|address|location)\s*(?:是|在|is|:|：)?\s*|在|就在|it'?s at |at )", re.I)
# an appliance or socket smoking: switch off the main switch first
_APPLIANCE_RE = re.compile(r"插座|插坐|插做|差座|插头|插线板|排插|电器|电表箱|电箱|配电箱|开关|电线老化|socket|outlet|plug|appliance|meter box|fuse box|breaker|electricity box", re.I)
# fire or a person hurt: an agent is alerted at once, besides the report
_LIFE_RE = re.compile(r"着火|起火|冒火(?!花|星)|火灾|烧起来|触电|电到人|被电|on fire|\bfire\b(?!works)|electrocut|(?:got|been|was) shocked", re.I)
# a hazard that is a repair rather than an emergency: leakage from old wiring, a tripping breaker
_CAUTION_RE = re.compile(r"漏电|跳闸|leak(?:ing|age)? (?:current|electricity)|electric leak", re.I)
# clause markers joining two requests in one message ("查下电费，顺便问下...")
_CLAUSE_RE = re.compile(
    r"(?<=[?？!！。；;])\s*|(?<=\w{2}\.)\s+(?=[A-Za-z])|[，,。.;；!！?？\s]*(?:顺便(?:问一?下|问问|说一?下)?|另外|还有(?:就是)?|然后(?:再)?|再帮我|and also|also,?|by the way,?|plus)\s*|"
    r",?\s+and\s+(?=(?:is|are|what|when|how|can|could|do|does|will|any)\b)", re.I)
# "直接给我转人工", "let me talk to a real person": an agent, whatever else the message says
_ASKS_HUMAN_RE = re.compile(r"转(?:个|一下|接)?人工|人工客服|找人工|要人工|接人工|找真人|要真人|真人客服|real person|human agent|live agent|"
                            r"(?:talk|speak|chat) (?:to|with) (?:a |an |some )?(?:human|person|agent|someone|operator|representative)|"
                            r"(?:get|give|put) me (?:through to )?(?:a |an )?(?:human|person|agent|operator|representative)|"
                            r"connect me (?:to|with) (?:a |an )?(?:human|person|agent|operator|representative)", re.I)
_LONG_DIGITS_RE = re.compile(r"\d{7,}")
# "尾号8000", "后四位9000", "last 4 is 8000", "the phone ends in 9000": the identity check given up front
_GIVEN_LAST4_RE = re.compile(
    r"(?:尾号|后4位|后四位|末4位|末四位|last ?(?:(?:4|four)(?: digits)?|digits)(?: of (?:my|the|your) (?:phone|mobile|number))?|"
    r"ends?(?: in| with)?|ending(?: in| with)?)\D{0,6}(\d{4})(?!\d)|"
    # "3100000002 / 9000", "3100000001, 8000", "3100000001 8000": four digits set apart right after the account
    r"(?<!\d)\d{10,13}\s*[,，/、;；\s]\s*(\d{4})(?![\d年月号日元块度/\-]|\.\d)", re.I)
# "尾号0001的", "account ending 0003", "the one ending in 0002": an offered account by its last digits
_ENDING_RE = re.compile(r"(?:尾号|末尾|后4位|后四位|结尾|ending(?: in| with)?|ends? (?:in|with))\D{0,4}(\d{4})(?!\d)", re.I)
# "帮我登记过户申请", "please register the transfer request": the request said again (at a
# confirmation: show it again, it is not a new request)
_ASKS_TO_SUBMIT_RE = re.compile(r"登记|提交|办理|申请|\b(?:register|submit|file|apply|lodge)\b", re.I)
# "你是真人还是机器人", "are you a bot?": who is answering
_ASKS_IF_BOT_RE = re.compile(r"机器人|真人吗|是真人|是人工吗|are you (?:a |an )?(?:bot|robot|human|real person|machine|ai)\b", re.I)
# a bare "ok"/"yes" says nothing of the language the customer writes in
_NEUTRAL_WORDS_RE = re.compile(r"^\s*(?:ok|okay|k|yes|no|y|n|hi|thx|ok+)\s*[.!?。！？]*\s*$", re.I)
ANON_RE = re.compile(
    r"匿名|不留|不要留|别留|不用留|不方便|不想(?:留|透露|告诉|说)|不愿(?:意)?(?:留|透露)|不要(?:写|记)我|保密|"
    r"anonymous|no contact|"
    r"(?:don'?t|do not|rather not|won'?t) (?:want to )?(?:leave|give|share|say|tell)|keep (?:my|it) |"
    r"without (?:my |a )?(?:name|number|contact)", re.I)
# a number corrected in passing: (pattern, group of the new number, group of the old one)
_SWAPS = (
    (re.compile(r"是\s*(\d+)\D{0,3}?不是\s*(\d+)"), 1, 2),
    (re.compile(r"不是\s*(\d+)\D{0,3}?(?:是|而是)\s*(\d+)"), 2, 1),
    (re.compile(r"(\d+)\s*(?:改成|换成|改为|应该是)\s*(\d+)"), 2, 1),
    (re.compile(r"(\d+)\D{0,8}?\bnot\s+(\d+)", re.I), 1, 2),
    (re.compile(r"\bnot\s+(\d+)\W{0,3}(?:but|it'?s|it is)\s+(\d+)", re.I), 2, 1),
)
_SUBSCRIBE_VERB_RE = re.compile(r"订一下|订个|订阅|帮我订|给我订|开通|开一下|\b(?:subscribe|sign me up|send me)\b", re.I)
_ONLY_SOME_RE = re.compile(r"(?:别的|其他|其它)(?:的)?(?:通知)?(?:都)?(?:不要|不用|不需要)|\bnothing else\b|\bnot the other", re.I)
_NEGATED_RE = re.compile(r"(?:不是|不要|并非|非)\S{0,3}$|\b(?:not|isn'?t|no)\b[\w\s]{0,6}$", re.I)
# which of someone's accounts: the shop's or the home's
_SHOP_WORDS_RE = re.compile(r"店|商铺|铺子|公司|饭馆|餐厅|厂|\b(?:shop|store|restaurant|business|company|office|cafe)\b", re.I)
_HOME_WORDS_RE = re.compile(r"家里|家的|家那|住的|住宅|居民|自己住|\b(?:home|house|flat|apartment|residential)\b", re.I)
_EV_RE = re.compile(r"充电桩|电车|电动车|新能源车|特斯拉|充电|\b(?:ev|electric car|charg\w*)\b", re.I)
_CHEAPER_RE = re.compile(r"便宜|划算|省钱|电价|一度多少|多少钱一度|\b(?:cheaper|cheap|price|cost|rate|tariff)\b", re.I)
_INSTALL_RE = re.compile(r"安装|装(?:个|一个)?(?:桩|充电桩)|报装|申请|\b(?:install\w*|apply|application|fit)\b", re.I)
# other utilities' and companies' bills
_OTHER_UTILITY_RE = re.compile(
    r"燃气费|煤气费|天然气费|水费|自来水|话费|宽带费?|物业费|停车费|暖气费|供暖费|取暖费|有线电视|停水|停气|"
    r"\b(?:gas|water|phone|mobile|internet|broadband|heating|property management|parking) (?:bill|fee|charge)s?\b|"
    r"\b(?:water|gas) (?:outage|cut|supply|shut ?off|shutoff)s?\b", re.I)
_ELECTRIC_RE = re.compile(r"电费|用电|电表|停电|供电|电价|电力|\belectric|\bpower\b|\bkwh\b|\bmeter\b", re.I)
# other companies' and agencies' services, named by what they are (a clinic's booking, a parcel,
# a credit card): none is 95598's business, whatever verb comes with it
_OTHER_SERVICE_RE = re.compile(
    r"手机费|电话费|流量|信用卡(?:账单|还款|额度)|花呗|借呗|白条|贷款|房贷|公积金|社保|医保|个税|快递|包裹|外卖|淘宝|京东|"
    r"拼多多|美团|饿了么|滴滴|机票|火车票|高铁票|电影票|门票|挂号|医生|牙医|疫苗|体检|驾照|违章停车|罚单|股票|彩票|"
    r"联通|中国移动|移动营业厅|电信营业厅|中国电信|"
    r"\b(?:credit card (?:bill|statement|limit)|loan|mortgage|parcel|courier|dhl|fedex|ups|taobao|amazon|flight|"
    r"train ticket|movie|cinema|doctor|dentist|clinic|vaccine|vaccination|lottery|stocks?|mobile data|data plan|"
    r"top ?up my (?:mobile|phone|cell)|(?:mobile|phone) (?:credit|top ?up|recharge)|"
    r"china mobile|china unicom|china telecom)\b", re.I)
# what the law says about stealing power
_PENALTY_RE = re.compile(r"处罚|罚款|罚多少|怎么罚|违法|犯法|坐牢|判刑|法律|\b(?:penalty|penalties|fine|fined|illegal|law|jail|prison|punish\w*|caught)\b", re.I)
_THEFT_RE = re.compile(r"偷电|窃电|私拉|\bsteal\w*|\btheft\b|\bstolen\b", re.I)
# is the power back
_RESTORED_RE = re.compile(r"(?:修好|恢复|来电|通电)了?(?:吗|没|么|没有)|(?:是不是|是否|有没有)(?:已经)?(?:好|修好|恢复|来电)了|"
                          r"现在(?:好|修好|恢复)了(?:吗|没|么)?|"
                          r"\b(?:fixed|restored|resolved|back on|back yet|sorted(?: out)?|over now|all good now)\b|"
                          # "前两天大统路停电了 怎么回事", "two days ago … had a blackout. what happened?": one past
                          r"(?:前两天|前几天|昨天|前天|上周|上礼拜).{0,30}(?:停电|停了.{0,8}电|没电).{0,20}(?:怎么回事|原因|为什么|咋回事)|"
                          r"\b(?:days? ago|yesterday|last (?:week|night))\b.{0,60}\b(?:blackout|outage|power cut|no power)\b"
                          r".{0,40}\b(?:what happened|why|what was (?:it|that)|what caused)", re.I)
# does a service cost anything
_FEE_RE = re.compile(r"收费|收钱|要钱|花钱|付钱|免费|费用|多少钱|\b(?:charge|charges|cost|costs|fee|fees|free|pay for)\b", re.I)
# when will someone come: asked about the order just filed
_ETA_RE = re.compile(
    r"多久|多长时间|什么时候(?:能|会|可以)?(?:来|到|修好|处理)|几点(?:能|会)?(?:来|到)|还要等|要等多久|"
    r"\bhow (?:long|soon)\b|\bwhen (?:will|can|do|does|is)\b.{0,25}\b(?:come|arrive|get here|be here|fix|here)|\beta\b", re.I)
_LOOKUP_OUTAGES_RE = re.compile(r"^\s*(?:查|查询|查一下|查查|看看)(?:一下)?(?:停电|停电信息|停电计划|停电通知)\s*[?？。.!！]*\s*$|"
                                r"^\s*停电(?:查询|信息)\s*$|^\s*(?:check|look up|show)(?: the)? (?:power )?outages?\s*\??\s*$", re.I)
_COMPLAINT_WORD_RE = re.compile(r"投诉|\bcomplain", re.I)
_WO_MENTION_RE = re.compile(r"\bWO\d|工单|我的投诉|my complaint", re.I)
_OVERDUE_RE = re.compile(r"超时|超期|逾期|过期|超过.{0,4}(?:时限|时间)|拖了|还没(?:来|修|处理)|\boverdue\b|\blate\b|"
                         r"\bby now\b|\bsupposed to\b|\bmissed the deadline\b", re.I)
_DUE_RE = re.compile(r"截止|最晚|到期|缴费期限|几号前|\bdeadline\b|\bdue\b|\blast day\b", re.I)
_WHY_SO_MUCH_RE = re.compile(r"(?:怎么|为什么|为啥|咋)(?:会|就)?(?:这么|那么|这样)?(?:多|贵|高)|这么(?:多|贵|高)|"
                             r"\bwhy\b.{0,20}\b(?:so (?:much|high)|that much|expensive)|\bso (?:much|high)\b\s*\?", re.I)
_SELL_BACK_RE = re.compile(r"余电|多余的电|上网电价|卖(?:给|电|回)|全额上网|自发自用|送回电网|\bsell\w*\b|\bfeed(?:-| )?in\b|\bexport\w*\b|"
                           r"\bsurplus\b|\bexcess (?:power|electricity)\b|\bback (?:in)?to the grid\b", re.I)
_LATER_RE = re.compile(r"下周|下礼拜|下星期|下个月|下次|以后|计划停电|检修|\bnext (?:week|month|time)\b|\bplanned\b|\blater\b", re.I)
# a span of days rather than one day ("这周", "最近", "this week")
_SPAN_RE = re.compile(r"这周|本周|这礼拜|这个礼拜|这星期|这个星期|最近|近期|这几天|这段时间|下周|下礼拜|下星期|"
                      r"\b(?:this|next) week\b|\bcoming days\b|\bnext few days\b|\bsoon\b", re.I)
_WHEN_RE = re.compile(r"几点|什么时候|哪天|多久|\bwhat time\b|\bwhen\b|\bwhich day\b|\bhow long\b", re.I)
# a question, not a detail ("为什么要电话", "why do you need it?")
_QUESTION_RE = re.compile(r"[?？]|吗|(?<![这那多])么|呢|([\u4e00-\u9fff])[不没]\1|为什么|为啥|怎么|多久|哪|几点|几号|几时|\b(?:why|what|how|when|where|who|which)\b", re.I)

# notification topics by the words that name them, in the order they are tried
TOPIC_WORDS = [
    ("outage", re.compile(r"停电|停送电|断电|检修|outage|power cuts?|blackouts?|(?:power|electricity) (?:is |goes )?(?:off|out)", re.I)),
    ("bill", re.compile(r"账单|电费|bill", re.I)),
    ("work_order", re.compile(r"工单|进度|work ?order|progress", re.I)),
    ("payment", re.compile(r"缴费|到账|payment", re.I)),
]

# "just the outage alerts", "只要账单提醒": the words after it name the only topics meant
_ONLY_RE = re.compile(r"(?:\bjust\b|\bonly\b|只要|只订|只开|只需要)([^,，。.;；]{0,24})", re.I)

# "how much would N kWh cost": with an amount of energy, a question of price (a tariff), not a bill
_PRICE_RE = re.compile(r"多少钱|费用|电费|cost|price|how much", re.I)
# "那上个月呢": the month before the one just shown, not the calendar's last month
_PREVIOUS_MONTH_RE = re.compile(r"上个?月|前一个?月|last month|previous month|month before", re.I)
# "and the one before?", "再往前呢": the period before the one just shown, with no month named
_EARLIER_RE = re.compile(
    r"\b(?:one|month|bill|period) before\b|\bbefore that\b|\bprevious one\b|\bearlier one\b|"
    r"之前(?:那|一)个?月?|再?前一(?:个月|期|个)|上一期|前一期|再往前|更早(?:的|一点)?", re.I)
# the tariff category a question names
_COMMERCIAL_RE = re.compile(r"商业|工商|一般工商|店|商铺|饭馆|餐厅|餐馆|公司|工厂|厂房|办公|"
                            r"commercial|business|shop|store|restaurant|cafe|factory|office", re.I)
_CATEGORY_NAMED_RE = re.compile(r"商业|居民|住宅|家用|家庭|家里|commercial|residential|\bhomes?\b|\bhouseholds?\b|\bapartments?\b|\bflats?\b|\bshops?\b|\bbusiness", re.I)
# digits, button payloads and codes ("WO202611280001") say nothing of the customer's language
_CODES_RE = re.compile(r"^/[a-z_]+|\bWO\d{6,}\b|\d+", re.I)
_LETTERS_RE = re.compile(r"[A-Za-z\u4e00-\u9fff]")
_NON_WORD_RE = re.compile(r"\W")


def is_hazard(text: str) -> bool:
    return HAZARD_RE.search(text) is not None


# "户号是啥 在哪看啊", "where do I find my account number?"
_WHERE_ACCOUNT_RE = re.compile(r"户号.{0,4}(?:是啥|是什么|是多少|多少来着|在哪|哪里|怎么(?:查|找|看))|(?:在哪|哪里|怎么)(?:看|查|找).{0,3}户号|"
                               r"(?:忘了|忘记了?|不记得|不知道)(?:我家)?(?:的)?户号|户号.{0,6}(?:忘了|忘记|不记得)|查(?:下|一下)?(?:我家)?(?:的)?户号|"
                               r"\bwhere (?:do|can) i (?:find|see|get)\b.{0,20}\baccount|\bwhat(?:'s| is) (?:an|the|my) account number\b|"
                               r"\b(?:forgot|forgotten|don'?t (?:know|remember)|lost) my account (?:number|no)\b", re.I)
# "since I reported the smoking meter box", "我报的冒烟那个": a hazard already reported, asked after
_ALREADY_REPORTED_RE = re.compile(r"(?<![警举])报过|已经报|报修了|我(?:早上|上午|中午|下午|昨天|昨晚|前天|刚才|之前)?报的|之前报|上次报|进度|到哪一?步|处理得怎么样|怎么还没(?:人)?来|"
                                  r"\bany (?:update|news)\b|\bupdate on\b|\bstatus of\b|\bstill waiting\b|\bnobody (?:came|has come)\b|\b(?:i|we) (?:already )?reported\b|\balready reported\b|\bsince i called\b", re.I)
_PIECES_RE = re.compile(r"[，,。.!！?？;；]+|(?<=[\u4e00-\u9fff])\s+|\s+(?=[\u4e00-\u9fff])")
_HAZARD_OVER_RE = re.compile(r"^(?:不|没|没有|不再|别)|(?:停了|没了|灭了|不冒了|好了|\bstopped\b|\bis gone\b|\bwent out\b)", re.I)


# "3号楼 二楼楼道", "building 3, 2nd floor stairwell": where exactly, inside a place already given
_REFINES_PLACE_RE = re.compile(r"^[^，,。？?]{0,12}(?:\d+\s*(?:号楼|栋|幢|单元|楼|层|室)|楼道|门口|旁边|对面|地下室|车库)[^？?]{0,12}$|"
                               r"^\W*(?:building|bldg|block|unit|floor|room|apt|flat)\s*\w+[\w\s,]{0,30}$", re.I)


def refines_place(text: str) -> bool:
    return _REFINES_PLACE_RE.search(text.strip()) is not None and not _LONG_DIGITS_RE.search(text)


_SUBMISSION_RE = re.compile(r"^\W*(?:(?:yes|ok|好的?|对)\W*)?(?:确认|确定|提交|confirm|submit)", re.I)




# street lights belong to the city's lighting office (12345), not to the power company
_STREET_LIGHT_RE = re.compile(r"路灯|\bstreet ?lights?\b|\bstreet ?lamps?\b|\blamp ?posts?\b", re.I)
# "一定要户号吗", "do I need my account number?": whether an inquiry needs an account
_ACCOUNT_NEEDED_RE = re.compile(r"(?:一定|必须|非得|需要|要)(?:要|有|提供)?户号|户号.{0,3}(?:必须|一定)|"
                                r"\b(?:do|must) i (?:need|have|give)\b.{0,15}\baccount\b", re.I)


_LIGHT_OUT_RE = re.compile(r"不亮|坏了|灭了|黑了|不开|\b(?:off|out|dark|broken|not working|doesn'?t work|flicker\w*)\b", re.I)
_LIVE_PARTS_RE = re.compile(r"电线|线|电缆|漏电|裸露|\b(?:cables?|wires?|exposed|live|shock\w*)\b", re.I)


_BEREAVED_RE = re.compile(r"去世|过世|走了以后|离世|病故|\bpassed away\b|\bdied\b|\bdeceased\b|\bpassing\b", re.I)
_CLOSE_ACCOUNT_RE = re.compile(r"销户|注销|停止用电|拆表|\bclos(?:e|ing) (?:my |the |our )?(?:electricity )?account\b|"
                               r"\bcancel (?:my |the )?(?:electricity )?account\b", re.I)


_CAPACITY_RE = re.compile(r"增容|扩容|加容量|增加容量|容量不够|\bcapacity (?:increase|upgrade)|\bmore capacity\b|"
                          r"\bincrease (?:the |my |our )?capacity\b|\bupgrade (?:the |my |our )?(?:capacity|supply)\b", re.I)


_MANY_DARK_RE = re.compile(r"整栋|整幢|整个小区|整条街|整片|一片|邻居(?:家)?(?:也|都)|楼上楼下|都没电|都停电|全都黑|"
                           r"\bwhole (?:building|block|street|compound|area|neighbou?rhood)\b|\bentire (?:building|block|street)\b|"
                           r"\bneighbou?rs?\b.{0,20}\b(?:too|also|as well|no power|dark|out)\b|\beveryone\b", re.I)


def beyond_one_home(text: str) -> bool:
    """"整栋都没电了", "the neighbours are dark too": more than one home without power (no need to
    ask whether it is the home's own switch)."""
    return _MANY_DARK_RE.search(text) is not None


def increases_capacity(text: str) -> bool:
    """"想增容", "our restaurant needs a capacity increase": more power for an existing supply."""
    return _CAPACITY_RE.search(text) is not None


def bereaved(text: str) -> bool:
    """"my father passed away", "老人去世了": a change of account after a death."""
    return _BEREAVED_RE.search(text) is not None


def closes_account(text: str) -> bool:
    """"我要销户", "close my account": the account is to be closed."""
    return _CLOSE_ACCOUNT_RE.search(text) is not None


def about_street_light(text: str) -> bool:
    """"路灯不亮了", "the street light has been off for a week": a lamp out, no cable or wire in danger."""
    return (_STREET_LIGHT_RE.search(text) is not None and _LIGHT_OUT_RE.search(text) is not None
            and _LIVE_PARTS_RE.search(text) is None)


def asks_if_account_needed(text: str) -> bool:
    return _ACCOUNT_NEEDED_RE.search(text) is not None and is_question(text)


_FIRM_YES_RE = re.compile(r"^\W*(?:是的?|对的?|确认|确定|提交|没问题|可以提交|yes|yep|yeah|confirm|submit|go ahead|please do|do it)"
                          r"(?!\w)(?!.{0,12}(?:谢|thank))|"
                          r"[，,。.]\s*(?:确认|确认提交|就这样提交|confirm|yes,? confirm)\W*$", re.I)  # "地址就是户号上那个，确认"


def firm_yes(text: str) -> bool:
    """"确认", "是的 提交", "yes go ahead": a yes that can only answer the question, unlike "好的" or
    "ok thanks", which may answer the last thing said."""
    return _FIRM_YES_RE.search(text) is not None and not declines(text)


def confirms_submission(text: str) -> bool:
    """"确认", "yes confirm", "submit": a yes that confirms a request, not one to a new offer."""
    return _SUBMISSION_RE.search(text) is not None


_REPORT_NEEDED_RE = re.compile(r"(?:要不要|需不需要|用不用|还要|还需要|是否需要)(?:再|我)?(?:报修|报个修|报一下|报告|登记|打电话)|"
                               r"\b(?:do|should) i (?:still )?(?:need to )?(?:report|file|call)\b", re.I)


def asks_if_report_needed(text: str) -> bool:
    """"那我还要不要再报个修啊", "should I still report it?": after being told of a known outage."""
    return _REPORT_NEEDED_RE.search(text) is not None


def asks_where_account(text: str) -> bool:
    return _WHERE_ACCOUNT_RE.search(text) is not None


def pieces(text: str) -> list[str]:
    """A message cut at its punctuation and at the spaces between Chinese words: the parts a
    rambling message says its request in ("喂 你好啊 … 我想问问我们家电费是不是欠着没交 …")."""
    return [p for p in _PIECES_RE.split(text) if p.strip()]


def mentions_report(text: str) -> bool:
    """"since I reported the smoking meter box", "我报的那个": about something already reported."""
    return _ALREADY_REPORTED_RE.search(text) is not None


def reports_hazard(text: str) -> bool:
    """A hazard told in a part of the message that does not take something back: "算了不查了
    小区配电箱在冒烟" is one (what is dropped is the bill), "没事了 不冒烟了" and "never mind, the
    sparks stopped" are not."""
    if not is_hazard(text) or _ALREADY_REPORTED_RE.search(text):
        return False
    for piece in _PIECES_RE.split(text):
        m = HAZARD_RE.search(piece)
        if m and not declines(piece) and not _HAZARD_OVER_RE.search(piece[:m.start()][-2:] + piece[m.end():]):
            return True
    return False


def is_angry(text: str) -> bool:
    return ANGRY_RE.search(text) is not None


# A complaint a person must take up, not only a work order: how a member of staff behaved, or a
# loss the customer may claim for (spoilt food, burnt appliances). 95598 routes both to an agent.
_AGENT_COMPLAINT_RE = re.compile(
    r"态度(?:太|很|极|非常|特别)?(?:差|恶劣|不好|蛮横)|骂(?:人|我|了)|很凶|太凶|刁难|不耐烦|甩脸|爱答不理"
    r"|(?:东西|食物|冰箱|家电|电器|电脑|电视|空调|设备)[^，。,.!！?？]{0,6}(?:坏了|烧了|烧坏|损坏|报废|臭了|化了)"
    r"|烧坏|损失|赔偿|赔钱|索赔|打碎|打烂|弄坏|砸坏|摔坏|踩坏|碰坏|刮花|弄丢"
    r"|\b(?:rude|rudely|yelled|shouted at|insulted|insulting|impolite|disrespectful|unprofessional|abusive)\b"
    r"|\b(?:ruined|damaged|destroyed|spoiled|spoilt|fried|burnt out|burned out|smashed|scratched|broke (?:my|our|the))\b"
    r"|\bcompensat", re.IGNORECASE)


def complaint_needs_agent(text: str) -> bool:
    """A complaint about staff conduct or a loss to compensate (``_AGENT_COMPLAINT_RE``)."""
    return _AGENT_COMPLAINT_RE.search(text) is not None


def is_cancel(text: str) -> bool:
    return CANCEL_RE.match(text) is not None


# "wait, no, make it the Xuhui one instead", "不对 改成后天": a change of what was asked, not a no
_CANCEL_WORDS_RE = re.compile(r"取消|不办了|算了|\bcancel\b|\bforget it\b|\bnever ?mind\b", re.I)
_CHANGE_RE = re.compile(r"改成|换成|改到|换到|改为|换个|\binstead\b|\bmake it\b|\bchange (?:it |that )?to\b|\bswitch (?:it )?to\b", re.I)


# "算了算了 还是一起交了吧": the customer takes back a change and does it after all
_AFTER_ALL_RE = re.compile(r"算了.{0,6}还是(?!算了|不|别)|\b(?:on second thought|actually),? (?:let'?s|i'?ll) (?:just )?(?:do|pay|go)", re.I)
_PAYS_ALL_RE = re.compile(r"一起交|全部交|都交|全交|一次交清|交清|\b(?:all of it|everything|in full|the whole (?:amount|lot)|pay (?:it )?all)\b", re.I)


def pays_all(text: str) -> bool:
    """"还是一起交了吧", "pay all of it": the whole amount owed, not one month."""
    return _PAYS_ALL_RE.search(text) is not None


# "取消预约", "刚才那个预约帮我取消掉吧", "cancel my appointment": a booking made is cancelled
_BOOKING = r"(?:预约|预定|约的|\b(?:appointments?|bookings?|reservations?|visit)\b)"
_UNBOOK = r"(?:取消|退掉|撤销|不去了|\bcancel\b|\bcall off\b)"
_CANCELS_BOOKING_RE = re.compile(
    rf"{_UNBOOK}[^，。,.!?！？]{{0,12}}{_BOOKING}|{_BOOKING}[^，。,.!?！？]{{0,12}}{_UNBOOK}", re.I)
_KEEPS_RE = re.compile(r"(?:不|别|不要|不用|don'?t|do not|no need to)\s*(?:取消|cancel)", re.I)


# "知道了 那先交钱吧", "ok got it, then I'll pay first": a word of acknowledgement before a request
_ACK_LEAD_RE = re.compile(r"^\s*(?:(?:知道了|明白了|了解了|懂了|收到|好吧|好的|好|行吧|行|嗯+|哦+|噢+|这样啊|原来如此|"
                          r"(?:ok(?:ay)?|got it|i see|alright|understood|fine|right)(?![a-z']))[，,。.!！~\s]*)+(?=\S)", re.I)


def after_acknowledgement(text: str) -> str | None:
    """The rest of a message that starts with a word of acknowledgement, or None."""
    m = _ACK_LEAD_RE.match(text)
    return text[m.end():] if m and len(text) - m.end() >= 2 else None


# "wait, it's not B1, the meter is in the B2 electrical room", "不是1202 是1203室": one piece of a
# place said again right
_PIECE = r"([a-z]?\d{1,5}[a-z]?)"
_REPLACED_RE = re.compile(rf"(?:不是|不在|\bnot\b|\bisn'?t\b|\bwasn'?t\b)\s*(?:在\s*|on\s+|in\s+|at\s+)?(?:the\s+)?{_PIECE}"
                          rf"(?:层|楼|号|室|栋)?[^\d]{{0,30}}?(?:是|在|\bis\b|\bin\b|\bat\b|\bon\b|[，,])\s*(?:the\s+)?{_PIECE}(?![\d])", re.I)


def replaced_piece(text: str) -> tuple[str, str] | None:
    """(what was wrong, what is right) when a message corrects one piece of a place."""
    m = _REPLACED_RE.search(text)
    if not m or m.group(1).lower() == m.group(2).lower():
        return None
    return m.group(1), m.group(2)


def with_piece_replaced(place: str, text: str) -> str | None:
    """``place`` with the piece ``text`` corrects put right ("…1500号B1层" + "it's not B1, … the
    B2 electrical room" → "…1500号B2层"), when that piece is in it once; None otherwise."""
    fix = replaced_piece(text)
    if fix is None:
        return None
    at = [m.start() for m in re.finditer(rf"(?<![\da-z]){re.escape(fix[0])}(?![\da-z])", place, re.I)]
    return place[:at[0]] + fix[1].upper() + place[at[0] + len(fix[0]):] if len(at) == 1 else None


# "what can you do?", "what kind of applications can I do here?", "你能办什么业务"
_CAPABILITIES_RE = re.compile(
    r"\bwhat (?:else )?(?:can|could) (?:you|u) (?:do|help)|\bwhat (?:you|u) can do\b|\bhow can you help\b|"
    r"\bwhat (?:kinds? of |sort of )?(?:services|applications|things|business) (?:can|do) (?:i|you)\b|"
    r"你(?:能|可以|会)(?:做|干|办|帮我?做?)(?:些)?(?:什么|啥)|(?:能|可以)办(?:理)?(?:哪些|什么|啥)(?:业务)?|有(?:哪些|什么)(?:业务|服务|功能)|都能办啥", re.I)


def asks_capabilities(text: str) -> bool:
    """A question about what the assistant can do."""
    return _CAPABILITIES_RE.search(text) is not None


# "会不会停我电", "will you cut off my power if I pay late": a disconnection for money owed
_DISCONNECTION_RE = re.compile(r"(?:停|断|掐)(?:掉)?我(?:家)?(?:的)?电|欠费.{0,6}(?:停电|断电)|不交.{0,6}(?:停电|断电)|"
                               r"\b(?:cut|turn|switch) (?:off )?my (?:power|electricity)(?: off)?\b|\bdisconnect (?:me|my)\b|"
                               r"\b(?:power|electricity)\b.{0,20}\b(?:cut|off|disconnected)\b.{0,20}\b(?:if|unless) (?:i|we) (?:don'?t|do not) pay\b",
                               re.I)


def fears_disconnection(text: str) -> bool:
    """Whether the customer asks if the power will be cut for not paying."""
    return _DISCONNECTION_RE.search(text) is not None


# words that ask for something ("我想…", "帮我…", "can I…", "please…"), besides questions
_ASKING_RE = re.compile(r"想|要|帮|请|麻烦|能不能|可不可以|可以|需要|申请|办理?|预约|约|订|查|交|开|报|通知|提醒|"
                        r"\b(?:want|need|would like|like to|can|could|please|pls|help|apply|let me|i['’]d|book|check|show|"
                        r"send|pay|notify|remind|tell|sign me up|subscribe|register)\b", re.I)


def asks_for_something(text: str) -> bool:
    """A question or a request, not only a statement of how things are ("the account is still in
    my landlord's name")."""
    return is_question(text) or _ASKING_RE.search(text) is not None


_SAME_PLACE_RE = re.compile(r"同一个|同一家|还是那个|还是那家|原来那个|一样的营业厅|\bsame (?:hall|place|one|office)\b", re.I)


def same_place(text: str) -> bool:
    """"book … instead, same hall", "还是那个营业厅": the hall of the visit before."""
    return _SAME_PLACE_RE.search(text) is not None


# "派人来看看吧", "please send someone": the crew asked for (a yes to a report's confirmation)
_DISPATCH_RE = re.compile(r"派(?:个)?人|派师傅|叫人来|找人来|快来人|\bsend (?:someone|somebody|a (?:crew|technician|tech|team|person|repairman))\b",
                          re.I)


def asks_dispatch(text: str) -> bool:
    """"嗯，派人来看看吧" and no more: a yes to a report (one that adds a detail or a number is shown again)."""
    return _DISPATCH_RE.search(text) is not None and not declines(text) and word_chars(text) <= 12 \
        and not any(ch.isdigit() for ch in text)


# the opt-out line at the end of a forwarded notice ("回复TD退订", "Reply STOP to opt out"): not the customer's
_NOTICE_FOOTER_RE = re.compile(r"[，,。.]?\s*(?:回复|回)\s*(?:TD|T|N|0)\s*退订[。.!！]?|\breply (?:stop|td|unsubscribe) to (?:opt out|unsubscribe|stop)\b\.?",
                               re.I)


def without_notice_footer(text: str) -> str:
    """A message with a pasted notice's opt-out line taken out (a "TD" in it is no opt-out)."""
    return _NOTICE_FOOTER_RE.sub(" ", text) if len(text) > 12 else text


# "尾号我不知道啊 是原房主留的手机", "I don't know her phone number": the check cannot be passed here
_CANNOT_VERIFY_RE = re.compile(r"(?:不知道|不记得|忘了|记不清|不清楚|没有)(?:了)?.{0,6}(?:尾号|后四位|后4位|手机|号码|电话)|"
                               r"(?:尾号|后四位|后4位|手机号?|号码|电话).{0,4}(?:不知道|不记得|忘了|记不清|不清楚)|^\W*(?:不记得|不知道)了?\W|"
                               r"\b(?:don'?t|do not|doesn'?t) (?:know|remember|have)\b.{0,25}\b(?:phone|number|last (?:4|four)|digits)\b|"
                               r"\bforgot\b.{0,20}\b(?:phone|number|last (?:4|four)|digits)\b", re.I)


def cannot_verify(text: str) -> bool:
    """The customer cannot give the registered phone's last 4 digits."""
    return _CANNOT_VERIFY_RE.search(text) is not None


_WHICH_PLACES_RE = re.compile(r"哪些路|哪几条路|哪条路|哪些地方|具体哪里|具体是哪|哪些小区|哪几个小区|范围是|"
                              r"\b(?:which|what) (?:streets?|roads?|areas?|places|neighbou?rhoods?|compounds?)\b|\bwhere exactly\b", re.I)


def asks_which_places(text: str) -> bool:
    """"which streets exactly?", "具体哪些路": where an answer's outages are."""
    return _WHICH_PLACES_RE.search(text) is not None


# an invoice's particulars: "抬头上海浦江餐饮有限公司 税号91310115MA1K4XYZ3Q 发到caiwu@pujiang-food.cn"
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_TAX_ID_RE = re.compile(r"(?:税号|纳税人识别号|信用代码|tax (?:id|number|no\.?)|vat (?:id|number|no\.?))\s*(?:是|为|is)?[:：\s]*([0-9A-Z]{15,20})\b|"
                        r"\b([0-9][0-9A-HJ-NPQRTUWXY][0-9]{6}[0-9A-HJ-NPQRTUWXY]{10})\b", re.I)
_TITLE_RE = re.compile(r"(?:抬头|发票抬头|开给|title|company name)\s*(?:是|为|is|:|：)?\s*([\u4e00-\u9fa5（）()]{4,40}?(?:公司|有限公司|集团|厂|店|中心|学校|医院)|"
                       r"[A-Za-z][A-Za-z .,&'-]{3,60}?(?:Ltd\.?|Limited|Co\.?|Inc\.?|LLC|Company))", re.I)


def invoice_details(text: str) -> dict[str, str]:
    """The title, tax number and e-mail address an invoice request gives (those it gives)."""
    found: dict[str, str] = {}
    if m := _TITLE_RE.search(text):
        found["title"] = m.group(1).strip()
    if m := _TAX_ID_RE.search(text):
        found["tax_id"] = (m.group(1) or m.group(2)).upper()
    if m := _EMAIL_RE.search(text):
        found["email"] = m.group(0)
    return found


# "what address is registered on my account …?", "户号登记的地址是哪里": the account's own record
_ACCOUNT_DETAILS_RE = re.compile(r"登记的?地址|户号.{0,6}地址是|用电地址是|户主是谁|户名是|"
                                 r"\b(?:what|which) (?:address|name) is (?:registered|on)\b|\bregistered address\b|"
                                 r"\baddress (?:registered|on (?:my|the) account)\b|\bwhose name\b", re.I)


def asks_account_details(text: str) -> bool:
    """A question about what an account records (its address, its holder)."""
    return _ACCOUNT_DETAILS_RE.search(text) is not None


def cancels_booking(text: str) -> bool:
    """"算了 取消预约吧", "can you cancel the booking": a booked visit is to be cancelled."""
    return _CANCELS_BOOKING_RE.search(text) is not None and _KEEPS_RE.search(text) is None


def says_cancel(text: str) -> bool:
    """"对 取消", "yes cancel it" (not "不取消了"): a yes to a cancellation."""
    return _CANCEL_WORDS_RE.search(text) is not None and _KEEPS_RE.search(text) is None


def changes_request(text: str) -> bool:
    """"make it the Xuhui one instead", "改成后天": a change to what is being asked."""
    return _CHANGE_RE.search(text) is not None


def change_at(text: str) -> int | None:
    """Where a change starts ("明天我要上班 改成后天下午吧": at 改成): what it names wins over
    what the message names before it."""
    m = _CHANGE_RE.search(text)
    return m.start() if m else None


def declines(text: str) -> bool:
    """The customer leaves what was being asked: "算了", "不用你们再登记了", "no, don't submit"."""
    if _CHANGE_RE.search(text) and not _CANCEL_WORDS_RE.search(text):
        return False
    if narrows_topics(text) or _AFTER_ALL_RE.search(text):
        return False  # "no, not bill reminders - just outage alerts", "算了 还是一起交了吧": a change, not a no
    return _DECLINE_START_RE.search(text) is not None or _DECLINE_ANY_RE.search(text) is not None


def corrects(text: str) -> bool:
    """The customer takes back what they asked, to ask something else ("哦不对，我是要报修")."""
    return _CORRECTS_RE.search(text) is not None


def affirms(text: str) -> bool:
    """A yes to the question just asked ("是的", "对，提交", "yes please"), not a decline, nor an
    "ok" that opens another question ("ok when exactly will it be back?")."""
    return _AFFIRM_RE.search(text) is not None and not declines(text) and not (
        is_question(text) and letter_count(text) > 6)


def means_registered_address(text: str) -> bool:
    return _REGISTERED_ADDRESS_RE.search(text) is not None


def means_registered_phone(text: str) -> bool:
    return _REGISTERED_PHONE_RE.search(text) is not None


def looks_like_address(text: str) -> bool:
    """Whether an answer reads like a place (a road, a lane, a number, a district), not a
    sentence, an account number or a phone."""
    rest = _NOT_ADDRESS_PART_RE.sub("", text)
    if not rest.strip() or rest.strip().isdigit():
        return False
    return _ADDRESS_RE.search(rest) is not None


def address_text(text: str) -> str:
    """The address part of an answer: the clauses that read like a place, without a phone
    number or the words introducing it ("地址是", "the address is")."""
    parts = [p.strip() for p in re.split(r"[;；。]|[，,](?=\s*(?:电话|手机|phone|tel|call))|\.\s+(?=[A-Z])", text) if p.strip()]
    keep = []
    for p in parts:
        p = _NOT_ADDRESS_PART_RE.sub("", p).strip(" ，,.。")
        p = _ADDRESS_LEAD_RE.sub("", p).strip(" ，,.。")
        p = re.split(r"\s(?:at|near|outside|on)\s(?=(?:no\.\s*)?\d)", p, flags=re.I)[-1]
        if p and looks_like_address(p):
            keep.append(p)
    return ("，" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else ", ").join(keep)[:200]


def about_appliance(text: str) -> bool:
    """A socket, an appliance or a meter box (smoking, sparking): switch off the main switch."""
    return _APPLIANCE_RE.search(text) is not None


def is_life_threatening(text: str) -> bool:
    """Fire or a person hurt by electricity: an agent is alerted at once."""
    return _LIFE_RE.search(text) is not None


def is_caution(text: str) -> bool:
    """Leakage or a tripping breaker: a repair with a safety tip, not an emergency."""
    return _CAUTION_RE.search(text) is not None


def clauses(text: str) -> list[str]:
    """A message split on the markers that join two requests ("顺便", "另外", "and also")."""
    return [c.strip(" ，,。.;；") for c in _CLAUSE_RE.split(text) if c and c.strip(" ，,。.;；")]


def asks_human(text: str) -> bool:
    return _ASKS_HUMAN_RE.search(text) is not None


_ID_LABEL_RE = re.compile(r"(?:户号|尾号|手机号?|联系电话|电话|account(?: number| no\.?)?|acct|last (?:4|four)(?: digits)?|"
                          r"phone(?: number)?|ends? (?:in|with))\s*(?:是|为|is|:|：)?\s*(?=[\s,，。.;；]|$)", re.I)
_EMPTY_PARTS_RE = re.compile(r"(?:\s*[,，;；]\s*)+(?=[,，;；.。]|$)|^\s*[,，;；.。]\s*|(?<=[.。])\s*[,，;；]")


def besides_identifiers(text: str) -> str:
    """What a message says besides the account, phone and last 4 digits it gives ("ok apply for me.
    account 3100000001, last four 8000, about 6 kW on our roof" → "ok apply for me. about 6 kW on our roof")."""
    rest = " ".join(_ID_LABEL_RE.sub(" ", without_identifiers(text)).split())
    for _ in range(2):  # the commas left around what was taken out
        rest = " ".join(_EMPTY_PARTS_RE.sub("", rest).split())
    return rest.strip(" ,，;；")


def without_identifiers(text: str) -> str:
    """The text with the numbers that identify someone blanked out, offsets kept ("户号…，尾号8000,
    峰谷怎么算": the 8000 is no amount of energy)."""
    blank = lambda m: " " * len(m.group(0))  # noqa: E731
    return _LONG_DIGITS_RE.sub(blank, _GIVEN_LAST4_RE.sub(blank, text))


def given_last4(text: str) -> str | None:
    """The last 4 digits of the phone given with the account ("户号…，尾号8000")."""
    m = _GIVEN_LAST4_RE.search(digits_view(normalize_chars(english_digits(text))))  # "后四位九零零零", "nine zero…"
    return (m.group(1) or m.group(2)) if m else None


def last4_answer(text: str) -> str | None:
    """The last 4 digits as the answer to the check: with their label ("手机尾号8000 这个是我儿子的
    号码哦", "last 4 is 8000") or alone ("8000")."""
    return given_last4(text) or last4(text)


def account_ending(text: str) -> str | None:
    """The last 4 digits an offered account is picked by ("尾号0001的", "account ending 0003")."""
    m = _ENDING_RE.search(text)
    return m.group(1) if m else None


def asks_to_submit(text: str) -> bool:
    return _ASKS_TO_SUBMIT_RE.search(text) is not None


def asks_if_bot(text: str) -> bool:
    return _ASKS_IF_BOT_RE.search(text) is not None


def language_neutral(text: str) -> bool:
    """A bare "ok"/"yes": it does not switch the conversation's language."""
    return _NEUTRAL_WORDS_RE.match(text) is not None


def wants_anonymity(text: str) -> bool:
    return ANON_RE.search(text) is not None


def topic(text: str) -> str | None:
    """The notification topic a message names (``TOPIC_WORDS``), if any."""
    for name, rx in TOPIC_WORDS:
        if rx.search(text):
            return name
    return None




def _only_topics_part(text: str) -> str | None:
    """The words after "just"/"只要" when they name a notice topic, else None."""
    only = _ONLY_RE.search(text)
    return only.group(1) if only and any(rx.search(only.group(1)) for _, rx in TOPIC_WORDS) else None


def narrows_topics(text: str) -> bool:
    """"just the outage alerts", "只要账单提醒": some notices, named after "just"/"只要"."""
    return _only_topics_part(text) is not None


def topics_named(text: str) -> list[str]:
    """Every notification topic a message names ("停电通知和账单提醒都帮我开通"), in ``TOPIC_WORDS``'
    order; the ones after "just"/"只要" when it says so ("just the outage alerts, I already get the
    bill on wechat": the outages)."""
    text = _only_topics_part(text) or text
    return [name for name, rx in TOPIC_WORDS if rx.search(text)]


def asks_fee(text: str) -> bool:
    """"上门修要收费吗", "do you charge for the visit?": whether a service costs the customer."""
    return _FEE_RE.search(text) is not None


def asks_price(text: str) -> bool:
    return _PRICE_RE.search(text) is not None


def says_previous_month(text: str) -> bool:
    return _PREVIOUS_MONTH_RE.search(text) is not None


def swapped_number(text: str) -> tuple[str, str] | None:
    """(new, old) of a number corrected in passing ("是1203室不是1202", "it's 98 not 88",
    "1202改成1203"), else None."""
    for rx, new, old in _SWAPS:
        m = rx.search(text)
        if m:
            return m.group(new), m.group(old)
    return None


def subscribes_only_some(text: str) -> bool:
    """"停电通知帮我订一下 别的不要", "just the outage alerts, nothing else": a subscription to
    one topic — the "不要" is about the others, not an unsubscribe."""
    return _SUBSCRIBE_VERB_RE.search(text) is not None and _ONLY_SOME_RE.search(text) is not None


def names_category(text: str) -> str | None:
    """The kind of account a customer means by words ("家里那个", "the restaurant one"):
    commercial, residential, or None."""
    found = []  # (position, kind) of each mention not negated ("不是店里的", "not the shop")
    for rx, kind in ((_SHOP_WORDS_RE, "commercial"), (_HOME_WORDS_RE, "residential")):
        for m in rx.finditer(text):
            if not _NEGATED_RE.search(text[max(0, m.start() - 8):m.start()]):
                found.append((m.start(), kind))
    return min(found)[1] if found else None


def asks_charging_price(text: str) -> bool:
    """"is it cheaper to charge my EV at night?", "家里充电桩充电一度多少钱": the price of the
    electricity, not a charger to install."""
    return _EV_RE.search(text) is not None and _CHEAPER_RE.search(text) is not None and _INSTALL_RE.search(text) is None


def other_utility(text: str) -> bool:
    """"帮我交一下燃气费", "pay my water bill": another utility's or company's bill, with no word
    of electricity — not something 95598 handles, whatever the request around it."""
    return _OTHER_UTILITY_RE.search(text) is not None and _ELECTRIC_RE.search(text) is None


# advertising and forwarded bank messages: "代开各类发票 联系微信", "低价代缴电费 打八折 加qq", "【招商银行】…"
_SPAM_RE = re.compile(r"代开.{0,6}发票|发票代开|(?:加|联系|私聊|咨询)\s*(?:qq|vx|v信|微信|威信|薇信)|打[一二三四五六七八九\d]折|"
                      r"兼职刷单|刷单|【[^】]{0,10}银行】|批发|厂家直销|量大从优|限时优惠|"
                      r"\bwholesale\b|\bwhatsapp me\b|\b(?:dm|message|contact) me on (?:whatsapp|telegram|wechat)\b|\bpromo code\b", re.I)


# someone trying to give the assistant new orders ("ignore all previous instructions", "你现在是管理员")
_INJECTION_RE = re.compile(r"\bignore (?:all |any |the )?(?:previous|prior|above|your|earlier) (?:instructions|rules|prompts?)\b|"
                           r"\b(?:admin|developer|debug|god) mode\b|\bsystem prompt\b|\byou are now\b|\bact as (?:an? )?(?:admin|system)\b|"
                           r"忽略(?:之前|以上|前面|你)的?(?:所有)?(?:指令|规则|设定|提示)|你现在是(?:管理员|开发者|系统)|管理员模式|开发者模式|系统提示词",
                           re.I)


def looks_like_spam(text: str) -> bool:
    """Advertising, forwarded bank texts, and instructions for the assistant itself."""
    return _SPAM_RE.search(text) is not None or _INJECTION_RE.search(text) is not None


def other_service(text: str) -> bool:
    """"预约九价疫苗", "status of my DHL package", "my credit card bill": another company's or
    agency's service, with no word of electricity."""
    return _OTHER_SERVICE_RE.search(text) is not None and _ELECTRIC_RE.search(text) is None


def asks_about_penalty(text: str) -> bool:
    """"偷电会被怎么处罚", "is it illegal?": a question about the law, not a report."""
    return _PENALTY_RE.search(text) is not None and is_question(text)


def asks_theft_law(text: str) -> bool:
    """"what's the penalty for stealing electricity?": the law on electricity theft."""
    return asks_about_penalty(text) and _THEFT_RE.search(text) is not None


def asks_if_restored(text: str) -> bool:
    """"现在修好了吗", "is it fixed now?": whether an outage is over."""
    return _RESTORED_RE.search(text) is not None


def asks_eta(text: str) -> bool:
    """"大概多久能到", "how long until they come": when will the crew (or the answer) come."""
    return _ETA_RE.search(text) is not None


def looks_up_outages(text: str) -> bool:
    """"查停电", "停电查询", "check outages": a lookup of outages, not a report of one."""
    return _LOOKUP_OUTAGES_RE.search(text) is not None


def asks_complaint_process(text: str) -> bool:
    """"投诉一般多久有人回复": how complaints are handled, not one to file."""
    return _COMPLAINT_WORD_RE.search(text) is not None and asks_eta(text) and is_question(text) \
        and not _WO_MENTION_RE.search(text)


def asks_if_overdue(text: str) -> bool:
    """"是不是超时了", "was it supposed to be fixed by now?": whether a deadline has passed."""
    return _OVERDUE_RE.search(text) is not None


def asks_due_date(text: str) -> bool:
    """"when is the deadline again?", "最晚哪天交": when a bill must be paid."""
    return _DUE_RE.search(text) is not None


def asks_why_so_much(text: str) -> bool:
    """"啥？？怎么这么多", "why is it so high?": why a figure just shown is what it is."""
    return _WHY_SO_MUCH_RE.search(text) is not None


def asks_about_selling_power(text: str) -> bool:
    """"can I sell the extra power back?", "余电能上网吗": selling solar power to the grid."""
    return _SELL_BACK_RE.search(text) is not None


def speaks_of_later(text: str) -> bool:
    """"下周那次", "the planned one next week": a time to come, not the outage on now."""
    return _LATER_RE.search(text) is not None


def names_span(text: str) -> bool:
    """"那徐汇这周呢", "what about this week?": several days, not the one day asked before."""
    return _SPAN_RE.search(text) is not None


def asks_when(text: str) -> bool:
    """"几点到几点", "what time?": a question of when, about what was just shown."""
    return _WHEN_RE.search(text) is not None


def is_question(text: str) -> bool:
    return _QUESTION_RE.search(text) is not None


def asks_earlier(text: str) -> bool:
    """A follow-up asking for the period before the one just shown, naming no month."""
    return _EARLIER_RE.search(text) is not None or says_previous_month(text)


def tariff_category(text: str) -> str:
    """The tariff a question is about: commercial when it says so, residential otherwise."""
    return "commercial" if _COMMERCIAL_RE.search(text) else "residential"


def names_tariff_category(text: str) -> bool:
    """Whether a question names a category itself (else the customer's account decides)."""
    return _CATEGORY_NAMED_RE.search(text) is not None


def has_language(text: str) -> bool:
    """Whether a message says which language the customer writes: digits, button payloads and
    codes such as a work order number ("WO202611280001") do not."""
    if text.startswith("/"):  # a button payload ("/choose{...}")
        return False
    return _LETTERS_RE.search(_CODES_RE.sub("", text)) is not None


def has_words(text: str) -> bool:
    """Whether a message says something in words besides numbers, codes and addresses' digits
    (at least three letters or Chinese characters once digits are left out)."""
    return len(_LETTERS_RE.findall(_CODES_RE.sub("", text))) >= 3


def letter_count(text: str) -> int:
    """How many letters and Chinese characters a message has (digits left out): a detail is
    words, not the numbers a form takes."""
    return len(_LETTERS_RE.findall(text))


def word_chars(text: str) -> int:
    """How many letters and digits a message has (punctuation and spaces left out): a long
    enough first message is itself the description of a complaint or a report."""
    return len(_NON_WORD_RE.sub("", text))
