"""Conversation engine throughput: ``step()`` turns per second, in process, no store or network.

    .venv/bin/python bench/engine.py [--seconds 3] [--profile short|long]

- short: a whole WeChat filing dialogue of typical 2-40 character chat turns (greeting,
  description, address, phone, confirmation, then a status query), the state carried from turn to
  turn as the gateway does; turns/s counts every turn;
- long: one ~1,300-character email-style text (prose with an address and a phone number inside,
  no quoted history) as the first turn of a fresh email conversation.

``--profile`` runs one of the two under cProfile and prints the top functions instead.
Last line: ``RESULT name=engine short_turns_per_s=… long_turns_per_s=…``.
"""

from __future__ import annotations

# `python bench/<name>.py` puts bench/ first on sys.path, where bench/email.py would shadow the
# standard library's `email` and bench/store.py our `store` package. Drop it and put the project
# root first, before anything else is imported; `python -m bench.<name>` works the same way.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from channels.base import Inbound, InboundKind  # noqa: E402
from conversation.engine import step  # noqa: E402
from conversation.settings import default_settings  # noqa: E402
from conversation.state import ConversationState  # noqa: E402

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
SETTINGS = default_settings()
SHORT_TURNS = (
    "你好",
    "小区门口的路灯坏了好几天了，晚上很黑",
    "幸福家园小区3栋东侧",
    "138 1234 5678",
    "确认",
    "查询进度",
    "谢谢",
)
LONG_TEXT = (
    "尊敬的市民热线工作人员：您好！我是东风街道幸福家园小区的居民，想反映一个困扰我们很久的问题。"
    "从上个月中旬开始，小区北门外的建设路上每天晚上十点以后都有大货车经过，车速很快，噪音非常大，"
    "有时候一直持续到凌晨两三点，严重影响了附近居民的休息。小区里有很多老人和小孩，很多人因此失眠，"
    "白天精神也不好。我们曾经向物业反映过几次，物业说这不归他们管，让我们找交警或者城管部门。"
    "我们也打过几次电话，但是一直没有得到明确的答复，问题也没有任何改善。另外，这些货车经过时还会"
    "扬起很多灰尘，路边停放的车辆和住户的窗台上每天都落满了灰，晾在阳台上的衣服也经常被弄脏。"
    "下雨天的时候路面上还有很多泥水，行人经过很不方便，孩子们上学放学都要绕很远的路。"
    "我们希望有关部门能够重视这个问题，调查一下这些货车是从哪里来的，是不是附近的工地在夜间违规施工，"
    "如果是的话，希望能够依法处理，限制夜间通行的时间，或者安排洒水车定期清洗路面，减少扬尘。"
    "我们也理解城市建设的需要，但是希望能够兼顾居民的正常生活，让大家能睡个安稳觉。"
    "具体地点是东风区建设路128号幸福家园小区北门外，靠近十字路口的那一段路，附近有一个公交车站。"
    "问题主要发生在每天晚上十点到凌晨三点之间，周末的时候情况更严重一些，有时候整夜都有车辆经过。"
    "如果需要进一步了解情况，可以随时联系我，我的手机是13812345678，白天晚上都可以打。"
    "我们小区的其他居民也愿意配合调查，提供照片和视频等材料，希望能够尽快得到处理和答复。"
    "另外，建设路上的几盏路灯也坏了很久，晚上一片漆黑，给行人和车辆带来了很大的安全隐患，"
    "之前已经发生过两次电动车摔倒的事故，希望相关部门能一并检查修复。"
    "再次感谢你们的辛勤工作，期待你们的回复。此致敬礼！一位关心社区环境的居民，二〇二六年十一月。"
    "补充说明：货车大多是渣土车，车身没有遮盖，车牌号码看不清楚，我们拍到的照片可以提供给你们。"
    "我们注意到，最近一段时间建设路两侧的人行道也被不少车辆占用，很多电动车和私家车随意停放，"
    "行人只能走到机动车道上，尤其是早晚高峰的时候非常危险。小区南门附近的垃圾桶也经常满了没人清理，"
    "夏天气味很大，还招来很多蚊虫苍蝇。希望城管和环卫部门能够加强巡查，增加清运的次数。"
    "小区内部的健身器材有几件已经损坏，螺丝松动，有孩子在上面玩的时候差点受伤，物业一直说没有经费维修。"
    "我们不知道这种情况应该由哪个部门负责，所以一并在这里反映，麻烦你们帮忙转给相关单位。"
    "以上情况都是我们亲眼看到的，如有不实之处，愿意承担相应责任。再次感谢你们耐心地看完这封信，"
    "也希望今后能有更方便的渠道，让居民的意见能及时传达给政府部门，我们也会继续关注处理的进展。"
    "最后想说明一下，我们并不是要给政府添麻烦，只是希望生活环境能够变得更好一些。"
    "社区的网格员也来看过几次，说会往上反映，但是一直没有下文，所以只好写这封邮件。"
    "如果你们需要现场核实，我们可以带路，也可以约在周末大家都在家的时候一起座谈。"
    "附近几个小区的居民也有同样的感受，大家都盼着这些问题能早日得到解决。"
    "这个问题已经持续了一个多月，居民们的意见都很大，有人说要联名写信，希望能尽快解决，谢谢！"
)


def _inbound(text: str, n: int, channel: str) -> Inbound:
    sender = "mailto:citizen@example.com" if channel == "email" else "wechat:wxbench:o_citizen"
    kind = InboundKind.EMAIL if channel == "email" else InboundKind.TEXT
    return Inbound(channel, "acct", sender, f"ext-{n}", kind, NOW, text)


def run_short(rounds: int) -> int:
    inbounds = [_inbound(t, i, "wechat") for i, t in enumerate(SHORT_TURNS)]
    turns = 0
    for _ in range(rounds):
        state = ConversationState()
        for inbound in inbounds:
            state, _ = step(state, inbound, NOW, SETTINGS)
            turns += 1
    return turns


def run_long(rounds: int) -> int:
    inbound = _inbound(LONG_TEXT, 0, "email")
    for _ in range(rounds):
        step(ConversationState(), inbound, NOW, SETTINGS)
    return rounds


def rate(run: Callable[[int], int], seconds: float) -> float:
    run(5)  # warm the regex cache and imports
    rounds, elapsed, turns = 1, 0.0, 0
    while elapsed < seconds:
        start = time.perf_counter()
        turns += run(rounds)
        elapsed += time.perf_counter() - start
        rounds *= 2
    return turns / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--profile", choices=("short", "long"))
    args = parser.parse_args()
    if args.profile:
        run = run_short if args.profile == "short" else run_long
        run(5)
        profiler = cProfile.Profile()
        profiler.runcall(run, 300)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    assert len(LONG_TEXT) >= 1290, len(LONG_TEXT)
    short = rate(run_short, args.seconds)
    long = rate(run_long, args.seconds)
    print(f"short: {short:,.0f} turns/s; long ({len(LONG_TEXT)} chars): {long:,.0f} turns/s")
    print(f"RESULT name=engine short_turns_per_s={short:.0f} long_turns_per_s={long:.0f}")


if __name__ == "__main__":
    main()
