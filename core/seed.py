"""Deterministic, realistic demo data for the core (``powerbot core seed``).

Everything is drawn from ``random.Random(95598)``; dates are relative to ``reference_date``
(default: today in Asia/Shanghai) and times to ``now`` (default: the wall clock; with an explicit
``reference_date``, 10:00 Shanghai time that day), so the same day always gives the same data.
Seeding is idempotent: nothing happens if the store already holds accounts.

Fixed fixtures (tests and README rely on them):
- 3100000001 张伟, phone 13800138000, 浦东新区 碧波路, residential, 2 months unpaid (arrears);
  an active unplanned outage covers 碧波路.
- 3100000002 李娜, phone 13900139000, 徐汇区, residential, everything paid.
- 3100000003 上海浦江餐饮有限公司, phone 13800138000 (second account of the same phone), commercial.
"""

from __future__ import annotations

import logging
import random
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.phones import sms_number
from common.pii import mask_phone

from . import models as m
from .pricing import CN_TZ, DEFAULT_TARIFFS, quote, sla_due

log = logging.getLogger("core.seed")

SEED = 95598

DISTRICTS: dict[str, list[str]] = {
    "浦东新区": ["碧波路", "张江路", "世纪大道", "陆家嘴环路", "杨高南路", "川沙路", "东方路", "锦绣路"],
    "黄浦区": ["南京东路", "淮海中路", "西藏南路", "复兴东路", "中山南路", "瞿溪路"],
    "徐汇区": ["漕溪北路", "衡山路", "天钥桥路", "龙华中路", "虹漕路", "田林路"],
    "静安区": ["南京西路", "延安中路", "共和新路", "万航渡路", "大统路", "彭江路"],
    "闵行区": ["莘庄路", "七莘路", "虹井路", "古美路", "浦星公路", "都市路"],
    "宝山区": ["牡丹江路", "友谊路", "共富路", "长江西路", "呼兰路", "淞滨路"],
    "崇明区": ["八一路", "人民路", "东门路", "城桥镇南门路"],
}
DISTRICT_WEIGHTS = [30, 12, 15, 13, 16, 10, 4]
COMPOUNDS = ["小区", "花园", "苑", "新村", "公寓", "家园"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国文斌宇浩凯晨欣怡佳琪子轩梓涵雨婷思远志伟海燕春梅晓东立新国庆"
COMPANY = ["餐饮有限公司", "便利店", "商贸有限公司", "美容美发店", "汽车维修部", "文化传媒有限公司", "超市", "洗衣店"]
CAUSES_PLANNED = ["线路检修", "配电变压器增容改造", "10kV线路迁改工程", "开关柜例行试验", "电缆通道施工配合停电"]
CAUSES_UNPLANNED = ["10kV线路故障跳闸", "配电变压器故障", "电缆被外力破坏", "雷击导致线路故障"]
HALLS = [
    ("国网上海浦东供电公司张江营业厅", "浦东新区", "浦东新区张江路665号", "021-58550000"),
    ("国网上海市区供电公司黄浦营业厅", "黄浦区", "黄浦区西藏南路1200号", "021-63110000"),
    ("国网上海市南供电公司徐汇营业厅", "徐汇区", "徐汇区漕溪北路398号", "021-64380000"),
    ("国网上海市北供电公司静安营业厅", "静安区", "静安区共和新路2000号", "021-56650000"),
    ("国网上海市南供电公司闵行营业厅", "闵行区", "闵行区莘庄路100号", "021-64920000"),
]
WO_SAMPLES = [
    ("repair", "家里电表箱冒烟，有焦糊味", "emergency"),
    ("repair", "楼道灯所在线路跳闸，整层没电", "high"),
    ("outage", "我家突然停电了，邻居家也没电", "high"),
    ("complaint", "抄表员态度差，电费比上月高很多", "normal"),
    ("feedback", "建议营业厅周末延长营业时间", "low"),
    ("new_connection", "新房需要办理居民新装用电", "normal"),
    ("solar", "屋顶分布式光伏并网申请，装机容量8kW", "normal"),
    ("ev_charging", "小区车位申请安装充电桩", "normal"),
    ("account_change", "房屋过户，申请更名", "normal"),
    ("invoice", "申请开具上月电费电子发票", "low"),
    ("violation", "发现有人私拉电线窃电", "high"),
]
STATUS_PATH = ["created", "dispatched", "in_progress", "resolved", "closed"]

FIXED_ACCOUNTS = [
    ("3100000001", "张伟", "13800138000", "浦东新区张江镇碧波路88弄5号1202室", "浦东新区", "residential"),
    ("3100000002", "李娜", "13900139000", "徐汇区漕溪北路201弄3号601室", "徐汇区", "residential"),
    ("3100000003", "上海浦江餐饮有限公司", "13800138000", "浦东新区世纪大道1500号B1层", "浦东新区", "commercial"),
]


def _month_seq(reference: date, n: int) -> list[str]:
    """``n`` months ending with the month before ``reference`` (bills are issued for last month)."""
    y, mo = reference.year, reference.month
    out = []
    for _ in range(n):
        mo -= 1
        if mo == 0:
            y, mo = y - 1, 12
        out.append(f"{y:04d}-{mo:02d}")
    return list(reversed(out))


def _due(month: str) -> date:
    y, mo = map(int, month.split("-"))
    return date(y + (mo == 12), mo % 12 + 1, 20)


def _season(month: str) -> float:
    mo = int(month[5:])
    return {1: 1.35, 2: 1.25, 3: 1.0, 4: 0.85, 5: 0.9, 6: 1.15, 7: 1.6, 8: 1.7, 9: 1.2, 10: 0.9, 11: 0.95, 12: 1.2}[mo]


def _local(d: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm), tzinfo=CN_TZ).astimezone(timezone.utc)


async def seed(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    n_accounts: int = 1000,
    reference_date: date | None = None,
    months: int = 12,
    now: datetime | None = None,
) -> list[str]:
    """Load demo data unless accounts exist; returns a human-readable summary.

    ``reference_date`` anchors the calendar: the ``months`` billed months end with the month
    before it, planned outages fall in the 7 days after it, hall slots in the 14 days from it.
    ``now`` (an aware datetime) anchors the moment of seeding: the active and restored outages,
    the work orders and every ``created_at``. Either defaults from the other: no
    ``reference_date`` means ``now``'s date in Asia/Shanghai; no ``now`` means the wall clock,
    or 10:00 Shanghai time on an explicit ``reference_date`` (so a seed for another day is that
    day's data throughout, not a mix of that day's bills and today's outages).
    """
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    async with sessionmaker() as s:
        existing = await s.scalar(select(func.count()).select_from(m.Account))
        if existing:
            return [f"core store already holds {existing} accounts — seeding skipped"]
    rng = random.Random(SEED)
    if now is None:
        now = _local(reference_date, 10) if reference_date else datetime.now(timezone.utc)
    now = now.astimezone(timezone.utc)
    today = reference_date or now.astimezone(CN_TZ).date()
    month_list = _month_seq(today, months)
    tariffs = {t["category"]: t for t in DEFAULT_TARIFFS}

    # --- accounts --------------------------------------------------------------------------
    accounts: list[dict[str, Any]] = []
    used = {a[0] for a in FIXED_ACCOUNTS}
    for no, name, phone, addr, district, cat in FIXED_ACCOUNTS:
        accounts.append(
            {"account_number": no, "holder_name": name, "phone": phone, "address": addr, "district": district,
             "category": cat, "status": "active", "created_at": now}
        )
    districts = list(DISTRICTS)
    while len(accounts) < n_accounts:
        no = "31" + f"{rng.randrange(10**8):08d}"
        if no in used:
            continue
        used.add(no)
        district = rng.choices(districts, DISTRICT_WEIGHTS)[0]
        street = rng.choice(DISTRICTS[district])
        commercial = rng.random() < 0.1
        if commercial:
            name = f"上海{rng.choice(SURNAMES)}{rng.choice(GIVEN)}{rng.choice(COMPANY)}"
            addr = f"{district}{street}{rng.randint(1, 1999)}号{rng.randint(1, 3)}层"
        else:
            name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
            compound = f"{street[:2]}{rng.choice(COMPOUNDS)}"
            addr = f"{district}{street}{rng.randint(1, 999)}弄{compound}{rng.randint(1, 40)}号{rng.randint(1, 30)}{rng.randint(1, 4):02d}室"
        phone = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
        if sms_number(phone) is None:  # a prefix not assigned to phones: give it one SMS can reach
            phone = "139" + phone[3:]
        accounts.append(
            {"account_number": no, "holder_name": name, "phone": phone, "address": addr, "district": district,
             "category": "commercial" if commercial else "residential", "status": "active", "created_at": now}
        )

    # --- bills: 12 months; ~8% of accounts leave the last 1–3 months unpaid -----------------
    bills: list[dict[str, Any]] = []
    arrears_accounts: list[str] = []
    for a in accounts:
        no = a["account_number"]
        if no == "3100000001":
            unpaid = 2
        elif no in ("3100000002", "3100000003"):
            unpaid = 0
        else:
            unpaid = rng.choice((1, 1, 2, 3)) if rng.random() < 0.08 else 0
        if unpaid:
            arrears_accounts.append(no)
        base = rng.uniform(1500, 6000) if a["category"] == "commercial" else rng.uniform(120, 330)
        for i, month in enumerate(month_list):
            kwh = Decimal(int(base * _season(month) * rng.uniform(0.85, 1.15)))
            if a["category"] == "residential":
                peak = Decimal(int(kwh * Decimal(str(round(rng.uniform(0.55, 0.7), 2)))))
                q = quote(tariffs["residential"], None, peak, kwh - peak)
                peak_kwh, valley_kwh = peak, kwh - peak
            else:
                q = quote(tariffs["commercial"], kwh)
                peak_kwh = valley_kwh = None
            is_unpaid = i >= len(month_list) - unpaid
            # last month's bill is issued on the 1st of this month and paid up to two weeks
            # later: never after the moment of seeding
            issued = min(_local(_due(month).replace(day=1), 9), now)
            paid_at = None if is_unpaid else min(issued + timedelta(days=rng.randint(1, 15), hours=rng.randint(0, 10)), now)
            bills.append(
                {
                    "account_number": no,
                    "month": month,
                    "kwh": kwh,
                    "peak_kwh": peak_kwh,
                    "valley_kwh": valley_kwh,
                    "amount": q["amount"],
                    "paid_amount": Decimal("0.00") if is_unpaid else q["amount"],
                    "due_date": _due(month),
                    "status": "unpaid" if is_unpaid else "paid",
                    "issued_at": issued,
                    "paid_at": paid_at,
                }
            )

    # --- bindings of the demo accounts -----------------------------------------------------
    bindings = [
        {"account_number": "3100000001", "channel": "wechat", "identity": "oDEMO_zhangwei", "created_at": now},
        {"account_number": "3100000003", "channel": "wechat", "identity": "oDEMO_zhangwei", "created_at": now},
        {"account_number": "3100000002", "channel": "alipay", "identity": "2088000000000002", "created_at": now},
    ]

    # --- outages: planned in the next 7 days, 2 active unplanned, 1 restored ---------------
    outages: list[dict[str, Any]] = []
    planned_districts = ["浦东新区", "黄浦区", "徐汇区", "静安区", "闵行区", "宝山区", "浦东新区", "崇明区"]
    for i, district in enumerate(planned_districts):
        day = today + timedelta(days=1 + i % 7)
        streets = rng.sample(DISTRICTS[district], 2)
        start = _local(day, rng.choice((8, 9, 13)))
        outages.append(
            {"kind": "planned", "status": "scheduled", "district": district,
             "scope": f"{district}{'、'.join(streets)}沿线部分小区及商铺", "streets": streets, "start_at": start,
             "estimated_end_at": start + timedelta(hours=rng.choice((4, 6, 8))), "actual_end_at": None,
             "cause": rng.choice(CAUSES_PLANNED), "created_at": now, "updated_at": now}
        )
    outages.append(
        {"kind": "unplanned", "status": "active", "district": "浦东新区", "scope": "浦东新区张江镇碧波路沿线小区（含碧波路88弄）",
         "streets": ["碧波路"], "start_at": now - timedelta(minutes=50), "estimated_end_at": now + timedelta(hours=2),
         "actual_end_at": None, "cause": "10kV线路故障跳闸，抢修人员已到场", "created_at": now, "updated_at": now}
    )
    outages.append(
        {"kind": "unplanned", "status": "active", "district": "宝山区", "scope": "宝山区友谊路部分小区", "streets": ["友谊路"],
         "start_at": now - timedelta(minutes=20), "estimated_end_at": now + timedelta(hours=3), "actual_end_at": None,
         "cause": "电缆被外力破坏", "created_at": now, "updated_at": now}
    )
    outages.append(
        {"kind": "unplanned", "status": "restored", "district": "静安区", "scope": "静安区大统路沿线", "streets": ["大统路"],
         "start_at": now - timedelta(days=2, hours=3), "estimated_end_at": now - timedelta(days=2),
         "actual_end_at": now - timedelta(days=2, minutes=30), "cause": "配电变压器故障", "created_at": now, "updated_at": now}
    )

    # --- work orders -----------------------------------------------------------------------
    work_orders: list[dict[str, Any]] = []
    for i in range(40):
        wo_type, desc, prio = WO_SAMPLES[i % len(WO_SAMPLES)]
        a = accounts[0] if i < 2 else rng.choice(accounts)
        anonymous = wo_type == "violation"
        created = now - timedelta(days=rng.randint(0, 60), minutes=rng.randint(0, 600))
        if i < 2:
            created = now - timedelta(hours=3 * (i + 1))
        stage = 2 if i < 2 else rng.randint(0, 4)
        history = []
        stamps: dict[str, datetime | None] = {f"{st}_at": None for st in STATUS_PATH[1:]}
        t = created
        for st in STATUS_PATH[: stage + 1]:
            if st != "created":
                t = min(t + timedelta(minutes=rng.randint(10, 600)), now)  # a recent order's steps: not in the future
                stamps[f"{st}_at"] = t
            history.append({"status": st, "at": t.isoformat(), "note": None})
        work_orders.append(
            {
                "id": "WO" + created.astimezone(CN_TZ).strftime("%y%m%d") + f"{rng.randrange(10**6):06d}",
                "type": wo_type, "status": STATUS_PATH[stage], "priority": prio,
                "account_number": None if anonymous else a["account_number"], "description": desc,
                "channel": rng.choice(("wechat", "alipay", "sms", "phone")),
                "contact_phone": a["phone"], "address": a["address"], "details": {},
                "history": history, "idempotency_key": f"seed-{i}", "request_hash": None,
                "sla_due_at": sla_due(wo_type, prio, a["district"], created),
                "created_at": created, "updated_at": t, **stamps,
            }
        )

    # --- halls and slots for the next 14 days ----------------------------------------------
    async with sessionmaker() as s:
        try:
            await s.execute(insert(m.Account), accounts)
        except IntegrityError:  # another process is seeding the same store right now
            await s.rollback()
            return ["core store is being seeded by another process — seeding skipped"]
        for chunk in range(0, len(bills), 2000):
            await s.execute(insert(m.Bill), bills[chunk : chunk + 2000])
        await s.execute(insert(m.AccountBinding), bindings)
        await s.execute(insert(m.Outage), outages)
        await s.execute(insert(m.WorkOrder), work_orders)
        slots: list[dict[str, Any]] = []
        for name, district, addr, phone in HALLS:
            hall = m.Hall(name=name, district=district, address=addr, phone=phone, opening_hours="周一至周日 09:00-17:00")
            s.add(hall)
            await s.flush()
            for d in range(14):
                day = today + timedelta(days=d)
                slots.append({"hall_id": hall.id, "date": day, "period": "morning", "starts_at": "09:00", "ends_at": "12:00",
                              "capacity": rng.choice((6, 8, 10)), "booked": rng.randint(0, 3)})
                slots.append({"hall_id": hall.id, "date": day, "period": "afternoon", "starts_at": "13:30", "ends_at": "17:00",
                              "capacity": rng.choice((6, 8)), "booked": rng.randint(0, 3)})
        await s.execute(insert(m.Slot), slots)
        created_outages = (await s.scalars(select(m.Outage).where(m.Outage.status != "restored").order_by(m.Outage.id))).all()
        for o in created_outages:
            s.add(
                m.Event(
                    type="outage.created",
                    payload={"id": o.id, "kind": o.kind, "status": o.status, "district": o.district, "scope": o.scope,
                             "streets": o.streets, "start_at": o.start_at.isoformat(),
                             "estimated_end_at": o.estimated_end_at.isoformat() if o.estimated_end_at else None, "cause": o.cause},
                    created_at=now,
                )
            )
        await s.commit()

    summary = [
        f"seeded {len(accounts)} accounts, {len(bills)} bills ({len(arrears_accounts)} accounts in arrears), "
        f"{len(outages)} outages, {len(work_orders)} work orders, {len(HALLS)} halls / {len(slots)} slots",
        "demo accounts:",
    ]
    for no, name, phone, _addr, district, cat in FIXED_ACCOUNTS:
        summary.append(f"  {no}  {name}  {mask_phone(phone)}  {district}  {cat}")
    log.info(summary[0])
    return summary


async def migrate_and_seed(db_url: str, *, n_accounts: int = 1000, reference_date: date | None = None,
                           now: datetime | None = None) -> list[str]:
    from .service import CoreService
    from .store import migrate, open_store

    await migrate(db_url)
    engine, sessions = open_store(db_url)
    try:
        svc = CoreService(sessions, engine.dialect.name)
        await svc.ensure_reference_data()
        return await seed(svc.sm, n_accounts=n_accounts, reference_date=reference_date, now=now)
    finally:
        await engine.dispose()
