"""What each supplier adapter costs per call: building and reading the messages of one order.

For each protocol (adapters/*.py), on inputs shaped like its test vector (protocols/*.md): the
submit built and its accepted reply read, the query built and its reply read, and a signed callback
verified and read (every protocol has one). Each figure is CPU µs per call (process time, so other
processes sharing the machine inflate it less than wall time), the median and the best of
`--repeat` timeit runs of `--number` calls (by default as many as take about 0.2 s). Each input is
checked to reach the path it is meant to time (an accepted reply, a verified callback) first.

`--save FILE` writes the figures as JSON; `--compare FILE` prints them next to a saved run, so a
change can quote its before and after (ratios of medians, and of bests, which vary less on a busy
machine; alternating before and after runs evens out the rest). Usage:

    .venv/bin/python bench/adapter_calls.py [--repeat 7] [--number N] [--save FILE] [--compare FILE]

Not named bench/adapters.py: scripts run from bench/ have it first on sys.path, where that name
would shadow the adapters package for bench/run.py and the rest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the adapters package is in the checkout

from adapters import dayuanren, fulu, juhe  # noqa: E402 - after the path is set
from adapters.interface import (  # noqa: E402
    AccountKind,
    AdapterSettings,
    Charge,
    HttpReply,
    InboundCallback,
    SupplierAdapter,
    Verdict,
)
from adapters.registry import adapter_factory  # noqa: E402

ORDER_ID: Final = "G01J8Z3Q7K2M4N6P8R0T2V4X6Z01"
VECTOR_TIME: Final = 1_795_312_800.0  # 2026-11-22 10:00:00 in China, every vector's timestamp
OPERATIONS: Final = ("build_submit", "parse_submit", "build_query", "parse_query", "parse_callback")

CREDENTIALS: Final[Mapping[str, Mapping[str, str]]] = {
    "fulu": {"app_key": "demo-app-key", "app_secret": "demo-app-secret"},
    "ofpay": {"userid": "A1234567", "password": "demo-password", "keystr": "OFCARD"},
    "juhe": {"key": "demo-key", "openid": "demo-openid"},
    "dayuanren": {"userid": "10001", "apikey": "demo-apikey"},
}
"""Each protocol's test-vector credentials."""

Call = Callable[[], object]


def _adapter(protocol: str) -> SupplierAdapter:
    settings = AdapterSettings(
        name=protocol, base_url="http://127.0.0.1:9100/", credentials=CREDENTIALS[protocol]
    )
    return adapter_factory(protocol)(settings)


def _charge(protocol: str) -> Charge:
    """The test vector's mobile order: 13800138000, 50 yuan, each protocol's callback URL."""
    return Charge(
        upstream_order_id=ORDER_ID,
        sku="101" if protocol == "dayuanren" else "140101",
        account="13800138000",
        account_kind=AccountKind.MOBILE_CN,
        face_value_cents=5000,
        quantity=1,
        max_cost_cents=4950,
        callback_url=f"http://127.0.0.1:8080/callbacks/{protocol}",
        timestamp=VECTOR_TIME,
    )


def _reply(body: bytes) -> HttpReply:
    return HttpReply(status=200, headers={"Content-Type": "text/plain"}, body=body)


def _form(body: bytes) -> InboundCallback:
    return InboundCallback(
        method="POST", query={}, content_type="application/x-www-form-urlencoded", body=body
    )


def _fulu_reply(result: Mapping[str, str]) -> bytes:
    text = fulu.compact_json(result)
    secret = CREDENTIALS["fulu"]["app_secret"]
    return fulu.compact_json(
        {"code": 0, "message": "成功", "result": text, "sign": fulu.sign_text(text, secret)}
    ).encode()


def _fulu_callback() -> bytes:
    fields = {
        "order_id": "F2026112210000001",
        "charge_finish_time": "2026-11-22 10:00:07",
        "customer_order_no": ORDER_ID,
        "order_status": "success",
        "recharge_description": "充值成功",
        "price": "49.30",
        "buy_num": "1",
        "operator_serial_number": "OP123",
    }
    return fulu.compact_json(
        {**fields, "sign": fulu.sign(fields, CREDENTIALS["fulu"]["app_secret"])}
    ).encode()


def _ofpay_reply() -> bytes:
    text = (
        '<?xml version="1.0" encoding="GB2312"?>\n'
        "<orderinfo><err_msg></err_msg><retcode>1</retcode><orderid>S2026112210000001</orderid>"
        "<cardid>140101</cardid>\n<cardnum>50</cardnum><ordercash>49.50</ordercash>"
        "<cardname>移动话费50元直充</cardname>\n"
        f"<sporder_id>{ORDER_ID}</sporder_id><game_userid>13800138000</game_userid>"
        "<game_state>0</game_state></orderinfo>"
    )
    return text.encode("gb2312")


def _dayuanren_callback() -> bytes:
    fields = {
        "userid": "10001",
        "order_number": "Y2026112210000001",
        "out_trade_num": ORDER_ID,
        "otime": "1795312807",
        "state": "1",
        "mobile": "13800138000",
        "remark": "充值成功",
        "charge_amount": "50.00",
        "voucher": "110101202611221000",
        "charge_kami": "",
    }
    signature = dayuanren.sign(fields, CREDENTIALS["dayuanren"]["apikey"])
    return dayuanren.encode_form({**fields, "sign": signature})


def _inputs(protocol: str) -> tuple[bytes, bytes, bytes]:
    """The accepted submit reply, the final query reply and a signed callback of `protocol`."""
    if protocol == "fulu":
        order = {"order_id": "F2026112210000001", "customer_order_no": ORDER_ID, "order_price": "49.30"}
        return (
            _fulu_reply({**order, "order_state": "processing"}),
            _fulu_reply({**order, "order_state": "success", "charge_finish_time": "2026-11-22 10:00:07"}),
            _fulu_callback(),
        )
    if protocol == "ofpay":
        sign = "4961AEB185A378DF5B9E9FC2A8169F60"  # ofpay.md's callback vector
        callback = (
            f"ret_code=1&sporder_id={ORDER_ID}&ordersuccesstime=20261122100007"
            f"&err_msg=%B3%E4%D6%B5%B3%C9%B9%A6&sign={sign}"
        )
        return _ofpay_reply(), b"1", callback.encode()
    if protocol == "juhe":
        submit = (
            '{"reason":"订单提交成功，等待充值","error_code":0,"result":{"cardid":"1900212","cardnum":"1",'
            '"ordercash":49.25,"cardname":"江苏电信话费50元直充","sporder_id":"J2026112210000001",'
            f'"uorderid":"{ORDER_ID}","game_userid":"13800138000","game_state":"0"}}}}'
        )
        query = (
            '{"reason":"查询成功","error_code":0,'
            '"result":{"uordercash":"49.25","sporder_id":"J2026112210000001","game_state":"1"}}'
        )
        sign = juhe.callback_sign(CREDENTIALS["juhe"]["key"], "J2026112210000001", ORDER_ID)
        callback = f"sporder_id=J2026112210000001&orderid={ORDER_ID}&sta=1&err_msg=&sign={sign}"
        return submit.encode(), query.encode(), callback.encode()
    submit = (
        '{"errno":0,"errmsg":"提交成功","data":{"order_number":"Y2026112210000001",'
        f'"out_trade_num":"{ORDER_ID}","total_price":"49.30"}}}}'
    )
    query = (
        '{"errno":0,"errmsg":"ok","data":[{"out_trade_num":"' + ORDER_ID + '",'
        '"order_number":"Y2026112210000001","state":1,"charge_amount":"50.00","voucher":"110101202611221000"}]}'
    )
    return submit.encode(), query.encode(), _dayuanren_callback()


def calls(protocol: str) -> dict[str, Call]:
    """The timed calls of `protocol`, each checked once to take the path it is meant to time."""
    adapter = _adapter(protocol)
    charge = _charge(protocol)
    submit, query, callback_body = _inputs(protocol)
    submit_reply, query_reply = _reply(submit), _reply(query)
    callback = _form(callback_body)
    ids = [ORDER_ID]
    timed: dict[str, Call] = {
        "build_submit": lambda: adapter.build_submit(charge),
        "parse_submit": lambda: adapter.parse_submit(ORDER_ID, submit_reply),
        "build_query": lambda: adapter.build_query(ids, VECTOR_TIME),
        "parse_query": lambda: adapter.parse_query(ids, query_reply),
        "parse_callback": lambda: adapter.parse_callback(callback),
    }
    accepted = adapter.parse_submit(ORDER_ID, submit_reply)
    assert accepted.verdict is Verdict.PROCESSING, (protocol, accepted)
    answered = adapter.parse_query(ids, query_reply)[ORDER_ID]
    assert answered.verdict is Verdict.SUCCEEDED, (protocol, answered)
    assert adapter.parse_callback(callback).verdict is Verdict.SUCCEEDED, protocol
    return timed


def microseconds(call: Call, repeat: int, number: int | None) -> tuple[float, float]:
    """The median and the best over `repeat` runs of CPU µs per call; `number` calls a run, else ~0.2 s."""
    timer = timeit.Timer(call, timer=time.process_time)
    if number is None:
        number, _ = timer.autorange()
    runs = [seconds / number * 1e6 for seconds in timer.repeat(repeat=repeat, number=number)]
    return statistics.median(runs), min(runs)


Figures = dict[str, dict[str, tuple[float, float]]]


def measure(repeat: int, number: int | None) -> Figures:
    return {
        protocol: {name: microseconds(call, repeat, number) for name, call in calls(protocol).items()}
        for protocol in CREDENTIALS
    }


def table(figures: Figures, before: Mapping[str, Any] | None) -> str:
    """A markdown table of µs per call (median, best), beside a saved run and the ratios of both."""
    if before is None:
        lines = ["| protocol | operation | median µs | best µs |", "|---|---|---:|---:|"]
    else:
        lines = [
            "| protocol | operation | before median (best) | after median (best) | after/before (best) |",
            "|---|---|---:|---:|---:|",
        ]
    for protocol, operations in figures.items():
        for name in OPERATIONS:
            median, best = operations[name]
            if before is None:
                lines.append(f"| {protocol} | {name} | {median:.1f} | {best:.1f} |")
                continue
            then = before.get(protocol, {}).get(name)
            shown = f"{then[0]:.1f} ({then[1]:.1f})" if then else "-"
            ratio = f"{median / then[0]:.2f} ({best / then[1]:.2f})" if then else "-"
            lines.append(f"| {protocol} | {name} | {shown} | {median:.1f} ({best:.1f}) | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=None, help="calls per run (default: ~0.2 s worth)")
    parser.add_argument("--save", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--compare", type=Path, help="a JSON file from --save to print beside")
    args = parser.parse_args()

    before = json.loads(args.compare.read_text()) if args.compare else None
    figures = measure(args.repeat, args.number)
    print(f"Python {sys.version.split()[0]}: CPU µs per call, median and best of {args.repeat} runs")
    print(table(figures, before))
    if args.save:
        args.save.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
