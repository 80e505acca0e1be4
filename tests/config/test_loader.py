"""The loader: YAML to the typed model, `${NAME}` expansion, and every problem at its key path."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest
import yaml

from adapters.interface import AccountKind, Verdict
from gateway.config.loader import (
    ConfigError,
    Problem,
    format_key_path,
    load_config,
    parse_config,
)
from gateway.config.model import GatewayConfig, LogLevel, Routing
from gateway.duration import format_duration, parse_duration
from gateway.secret import Secret
from tests.config.samples import fulu, offer, paths, problems, valid

HERE = Path(__file__).parent


# Loading what the contract shows


def test_complete_contract_example_loads_with_its_values() -> None:
    config = load_config(HERE / "complete.yaml", {"FULU_APP_SECRET": "from-env"})

    assert config.server.listen == "0.0.0.0:8080"
    assert config.server.max_body_bytes == 65536
    assert config.admin.token == Secret("")
    assert config.store == "sqlite:///var/gateway.db"
    assert config.orders.sync_wait == 2.0
    assert config.orders.not_found_grace == 60.0
    assert config.orders.manual_review_after == 86400.0
    assert config.notify.backoff.max == 3600.0
    assert config.log.level is LogLevel.INFO
    shop = config.shops["demo"]
    assert shop.secret.reveal() == "demo-secret"
    assert shop.products == ("mobile.*", "game.qq.*")
    supplier = config.suppliers["fulu"]
    assert supplier.credentials["app_secret"].reveal() == "from-env"
    assert supplier.rate_limit.rate == 100.0
    assert supplier.rate_limit.max_wait == 0.25
    assert supplier.breaker.max_open_for == 300.0
    assert supplier.codes == {"3006": Verdict.NOT_EXECUTED}
    assert supplier.simulate is not None
    assert supplier.simulate.latency == 0.05
    assert supplier.simulate.success_rate == 0.97
    assert config.suppliers["fulu_east"].simulate is None
    product = config.products["mobile.cmcc.50"]
    assert product.account is AccountKind.MOBILE_CN
    assert product.face_value == 5000
    assert product.routing is Routing.ADAPTIVE
    assert [(o.supplier, o.cost, o.priority, o.weight) for o in product.offers] == [
        ("fulu", 4930, 1, 3),
        ("fulu_east", 4925, 1, 1),
        ("fulu_backup", 4950, 2, 1),
    ]


def test_maps_are_read_only() -> None:
    config = load_config(HERE / "complete.yaml", {})

    assert isinstance(config.suppliers, MappingProxyType)
    assert isinstance(config.products, MappingProxyType)
    assert isinstance(config.suppliers["fulu"].credentials, MappingProxyType)
    assert isinstance(config.products["mobile.cmcc.50"].offers, tuple)


def test_contract_example_as_printed_names_only_its_undefined_suppliers() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(HERE / "contract_example.yaml", {})

    assert [problem.path for problem in caught.value.problems] == [
        'products["mobile.cmcc.50"].offers[1].supplier',
        'products["mobile.cmcc.50"].offers[2].supplier',
    ]
    assert 'unknown supplier "juhe"' in caught.value.problems[0].message


def test_empty_file_is_every_default() -> None:
    assert parse_config("", {}) == GatewayConfig()
    assert parse_config("# nothing yet\n", {}) == GatewayConfig()


def test_section_with_every_line_commented_out_is_its_defaults() -> None:
    assert parse_config("server:\n  # listen: 1.2.3.4:80\n", {}).server.listen == "0.0.0.0:8080"


def test_secrets_never_appear_in_repr_or_str() -> None:
    environ = {
        "FULU_APP_SECRET": "very-secret-app",
        "DEMO_SHOP_SECRET": "very-secret-shop",
        "GATEWAY_ADMIN_TOKEN": "very-secret-token",
    }
    config = load_config(HERE / "complete.yaml", environ)
    for shown in (repr(config), str(config), repr(config.suppliers), repr(config.shops["demo"])):
        assert "very-secret" not in shown
        assert "demo-app-key" not in shown
    assert config.admin.token.reveal() == "very-secret-token"


# Environment expansion


def test_environment_fills_references_after_parsing() -> None:
    data = valid()
    data["server"] = {"listen": "${HOST:-0.0.0.0}:${PORT}"}
    data["shops"]["demo"]["secret"] = "${SHOP_SECRET}"
    fulu(data)["timeout"] = "${TIMEOUT:-3s}"
    text = yaml.safe_dump(data)

    config = parse_config(text, {"PORT": "9000", "SHOP_SECRET": "a: b # not a comment"})

    assert config.server.listen == "0.0.0.0:9000"
    assert config.shops["demo"].secret.reveal() == "a: b # not a comment"
    assert config.suppliers["fulu"].timeout == 3.0


def test_set_variable_wins_over_default_and_empty_counts_as_unset() -> None:
    data = valid()
    data["store"] = "${STORE:-memory://}"

    assert parse_config(yaml.safe_dump(data), {"STORE": "redis://r:6379/0"}).store == "redis://r:6379/0"
    assert parse_config(yaml.safe_dump(data), {"STORE": ""}).store == "memory://"
    assert parse_config(yaml.safe_dump(data), {}).store == "memory://"


def test_empty_default_and_empty_variable_give_an_empty_string() -> None:
    data = valid()
    data["admin"] = {"token": "${TOKEN:-}"}
    data["shops"]["demo"]["secret"] = "x${EMPTY}"

    config = parse_config(yaml.safe_dump(data), {"EMPTY": ""})

    assert config.admin.token == Secret("")
    assert config.shops["demo"].secret.reveal() == "x"


def test_missing_variable_without_default_is_an_error_at_its_key() -> None:
    data = valid()
    fulu(data)["credentials"]["app_secret"] = "${FULU_SECRET}"

    assert problems(data) == [
        (
            "suppliers.fulu.credentials.app_secret",
            "environment variable FULU_SECRET is not set and has no default (${FULU_SECRET:-default})",
        )
    ]


def test_several_missing_variables_in_one_value_are_one_problem() -> None:
    data = valid()
    data["server"] = {"listen": "${HOST}:${PORT}"}

    assert problems(data) == [
        ("server.listen", "environment variables HOST, PORT are not set and have no default")
    ]


def test_double_dollar_writes_a_literal_reference_and_a_lone_dollar_is_kept() -> None:
    data = valid()
    data["shops"]["demo"]["secret"] = "pa$$word-$${NOT_A_VAR}-$5"

    config = parse_config(yaml.safe_dump(data), {"NOT_A_VAR": "no"})

    assert config.shops["demo"].secret.reveal() == "pa$$word-${NOT_A_VAR}-$5"


def test_malformed_reference_is_an_error() -> None:
    data = valid()
    data["store"] = "${not valid}"

    assert paths(data) == ["store"]
    assert "malformed" in problems(data)[0][1]


def test_expanded_value_is_not_expanded_again() -> None:
    data = valid()
    data["shops"]["demo"]["secret"] = "${OUTER}"

    config = parse_config(yaml.safe_dump(data), {"OUTER": "${INNER}"})

    assert config.shops["demo"].secret.reveal() == "${INNER}"


# Structure: unknown and missing keys


def test_unknown_keys_are_errors_with_a_suggestion() -> None:
    data = valid()
    data["sever"] = {"listen": "0.0.0.0:80"}
    offer(data)["wieght"] = 2

    assert problems(data) == [
        ('products["mobile.cmcc.50"].offers[0].wieght', 'unknown key; did you mean "weight"?'),
        ("sever", 'unknown key; did you mean "server"?'),
    ]


def test_unknown_key_without_a_close_match_lists_the_valid_ones() -> None:
    data = valid()
    data["log"] = {"colour": True}

    assert problems(data) == [("log.colour", "unknown key; valid keys: level, format")]


def test_missing_required_keys_are_errors() -> None:
    data = valid()
    del fulu(data)["protocol"]
    del offer(data)["cost"]
    del data["shops"]["demo"]["secret"]

    assert problems(data) == [
        ("shops.demo.secret", "required key is missing"),
        ("suppliers.fulu.protocol", "required key is missing"),
        ('products["mobile.cmcc.50"].offers[0].cost', "required key is missing"),
    ]


def test_section_of_the_wrong_shape() -> None:
    data = valid()
    data["server"] = 8080
    data["notify"] = {"backoff": ["5s", "1h"]}

    assert problems(data) == [
        ("server", "expected a mapping, got integer 8080"),
        ("notify.backoff", "expected a mapping, got a list"),
    ]


def test_document_that_is_not_a_mapping() -> None:
    assert problems("- a\n- b\n") == [("", "expected a mapping of sections at the top level, got a list")]


# Scalars


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2 seconds", 'must be a duration like 250ms, 2s, 5m or 24h; got string "2 seconds"'),
        ("-1s", 'must be a duration like 250ms, 2s, 5m or 24h; got string "-1s"'),
        ("2", 'a duration needs a unit (ms, s, m or h), e.g. "2s"; got string "2"'),
        (2, 'a duration needs a unit (ms, s, m or h), e.g. "2s"; got integer 2'),
        (1.5, 'a duration needs a unit (ms, s, m or h), e.g. "1.5s"; got number 1.5'),
        ("11s", "must be at least 0s and at most 10s; got 11s"),
        (None, "must be a duration like 250ms, 2s, 5m or 24h; got null"),
    ],
)
def test_bad_durations(value: object, message: str) -> None:
    data = valid()
    data["orders"] = {"sync_wait": value}

    assert problems(data) == [("orders.sync_wait", message)]


def test_durations_in_every_unit() -> None:
    data = valid()
    data["orders"] = {"sync_wait": "250ms", "reconcile_after": "1.5s", "not_found_grace": "5m"}
    data["orders"]["manual_review_after"] = "24h"

    orders = parse_config(yaml.safe_dump(data), {}).orders

    assert (orders.sync_wait, orders.reconcile_after, orders.not_found_grace) == (0.25, 1.5, 300.0)
    assert orders.manual_review_after == 86400.0


def test_zero_duration_where_it_must_be_positive() -> None:
    data = valid()
    fulu(data)["timeout"] = "0s"

    assert problems(data) == [("suppliers.fulu.timeout", "must be greater than 0s; got 0s")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (49.3, 'money must be a quoted decimal string, e.g. "49.3"; got number 49.3'),
        (49, 'money must be a quoted decimal string, e.g. "49"; got integer 49'),
        (
            "49.301",
            'must be a decimal amount like "49.30": no sign, at most two decimals; got string "49.301"',
        ),
        ("-1", 'must be a decimal amount like "49.30": no sign, at most two decimals; got string "-1"'),
        ("¥49", 'must be a decimal amount like "49.30": no sign, at most two decimals; got string "¥49"'),
        ([], 'expected a decimal string like "49.30", got a list'),
    ],
)
def test_bad_money(value: object, message: str) -> None:
    data = valid()
    offer(data)["cost"] = value

    assert problems(data) == [('products["mobile.cmcc.50"].offers[0].cost', message)]


def test_money_range_is_shown_as_money() -> None:
    data = valid()
    data["products"]["mobile.cmcc.50"]["face_value"] = "0.00"

    assert problems(data) == [('products["mobile.cmcc.50"].face_value', "must be at least 0.01; got 0")]


def test_bad_enums_list_the_valid_values() -> None:
    data = valid()
    data["products"]["mobile.cmcc.50"]["routing"] = "fastest"
    data["products"]["mobile.cmcc.50"]["account"] = 13800138000
    fulu(data)["codes"] = {"3006": "skipped"}

    assert problems(data) == [
        (
            'suppliers.fulu.codes["3006"]',
            "must be one of processing, succeeded, partial, failed, account_invalid, not_executed, "
            'throttled, balance_insufficient, not_found, unknown; got string "skipped"',
        ),
        (
            'products["mobile.cmcc.50"].account',
            "must be one of mobile_cn, qq, game, any; got integer 13800138000",
        ),
        (
            'products["mobile.cmcc.50"].routing',
            'must be one of priority, weighted, adaptive, cheapest; got string "fastest"',
        ),
    ]


def test_patterns_name_the_rule_and_the_value() -> None:
    data = valid()
    data["server"] = {"listen": "8080", "public_url": "127.0.0.1:8080"}
    data["store"] = "postgres://db"

    assert problems(data) == [
        ("server.listen", 'must be host:port, e.g. 0.0.0.0:8080; got string "8080"'),
        ("server.public_url", 'must be an http:// or https:// URL; got string "127.0.0.1:8080"'),
        (
            "store",
            'must be memory://, sqlite:///path or a redis://, rediss:// or redis+cluster:// URL; got string "postgres://db"',
        ),
    ]


def test_map_keys_are_checked_against_their_pattern() -> None:
    data = valid()
    data["shops"]["bad shop"] = {"secret": "x", "products": ["mobile.*"]}

    assert problems(data) == [
        ('shops["bad shop"]', "invalid name: must be 1 to 64 of letters, digits, _ and -")
    ]


def test_map_keys_must_be_strings() -> None:
    data = valid()
    fulu(data)["codes"] = {3006: "not_executed"}

    assert problems(data) == [
        ('suppliers.fulu.codes["3006"]', 'keys must be strings, got integer 3006; quote it: "3006"')
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "expected an integer, got boolean true"),
        (1024.0, "expected an integer, got number 1024.0"),
        ("1024", 'expected an integer, got string "1024"'),
        (100, "must be at least 256 and at most 16777216; got 100"),
    ],
)
def test_integers_are_strict(value: object, message: str) -> None:
    data = valid()
    data["server"] = {"max_body_bytes": value}

    assert problems(data) == [("server.max_body_bytes", message)]


def test_numbers_accept_integers_but_not_booleans_or_nan() -> None:
    data = valid()
    fulu(data)["rate_limit"] = {"rate": 50}

    assert parse_config(yaml.safe_dump(data), {}).suppliers["fulu"].rate_limit.rate == 50.0

    fulu(data)["rate_limit"] = {"rate": True}
    fulu(data)["breaker"] = {"failure_rate": float("nan"), "slow_call_rate": 1.5}
    assert problems(data) == [
        ("suppliers.fulu.rate_limit.rate", "expected a number, got boolean true"),
        ("suppliers.fulu.breaker.failure_rate", "expected a finite number, got number nan"),
        ("suppliers.fulu.breaker.slow_call_rate", "must be greater than 0 and at most 1; got 1.5"),
    ]


def test_strings_are_not_guessed_from_numbers() -> None:
    data = valid()
    offer(data)["sku"] = 50

    assert problems(data) == [
        ('products["mobile.cmcc.50"].offers[0].sku', 'expected a string, got integer 50; quote it: "50"')
    ]


def test_booleans_are_strict() -> None:
    data = valid()
    fulu(data)["disabled"] = "yes please"

    assert problems(data) == [("suppliers.fulu.disabled", 'expected true or false, got string "yes please"')]


def test_a_secret_of_the_wrong_type_is_not_echoed() -> None:
    data = valid()
    data["shops"]["demo"]["secret"] = 918273645

    found = problems(data)

    assert found == [("shops.demo.secret", "expected a string, got an integer; quote it")]


def test_lists_and_their_minimum_length() -> None:
    data = valid()
    data["shops"]["demo"]["products"] = "mobile.*"
    data["products"]["mobile.cmcc.50"]["offers"] = []

    assert problems(data) == [
        ("shops.demo.products", 'expected a list, got string "mobile.*"; write a list: ["mobile.*"]'),
        ('products["mobile.cmcc.50"].offers', "must have at least 1 item"),
    ]


def test_optional_values() -> None:
    data = valid()
    fulu(data)["simulate"] = {"seed": 7, "latency": "0ms"}

    simulate = parse_config(yaml.safe_dump(data), {}).suppliers["fulu"].simulate
    assert simulate is not None
    assert (simulate.seed, simulate.latency, simulate.hang_charges) == (7, 0.0, True)

    fulu(data)["simulate"] = None
    assert parse_config(yaml.safe_dump(data), {}).suppliers["fulu"].simulate is None

    fulu(data)["simulate"] = {"seed": "seven"}
    assert problems(data) == [("suppliers.fulu.simulate.seed", 'expected an integer, got string "seven"')]


# Reporting: all at once, YAML-level problems


def test_every_problem_in_a_file_is_reported_at_once() -> None:
    text = """\
server:
  listen: nowhere
orders:
  sync_wait: 2
shops:
  demo:
    secret: "${SHOP_SECRET}"
    products: ["mobile.*"]
suppliers:
  fulu:
    protocol: fulu
    base_url: http://127.0.0.1:9101
    credentials: {app_key: k, app_secret: s}
    breaker: {open_for: 1m, max_open_for: 30s}
products:
  mobile.cmcc.50:
    account: mobile_cn
    face_value: "50"
    routing: fastest
    offers:
      - {supplier: fulu, sku: "1", cost: 49.30}
  mobile.cmcc.100:
    account: mobile_cn
    face_value: "100"
    offers:
      - {supplier: fulu, sku: "2", cost: "99.00"}
      - {supplier: nobody, sku: "3", cost: "98.00"}
"""

    assert paths(text) == [
        "server.listen",
        "orders.sync_wait",
        "shops.demo.secret",
        'products["mobile.cmcc.50"].routing',
        'products["mobile.cmcc.50"].offers[0].cost',
        "suppliers.fulu.breaker.max_open_for",
        'products["mobile.cmcc.100"].offers[1].supplier',
    ]


def test_duplicate_keys_are_errors_with_their_lines() -> None:
    text = """\
suppliers:
  fulu:
    protocol: fulu
    base_url: http://127.0.0.1:9101
    credentials: {app_key: k, app_secret: s}
    timeout: 2s
    timeout: 3s
  fulu:
    protocol: fulu
    base_url: http://127.0.0.1:9102
    credentials: {app_key: k, app_secret: s}
"""

    assert problems(text) == [
        ("suppliers.fulu.timeout", "duplicate key: first at line 6, again at line 7"),
        ("suppliers.fulu", "duplicate key: first at line 2, again at line 8"),
    ]


def test_merge_keys_are_not_duplicates() -> None:
    config_text = """\
suppliers:
  fulu: &fulu
    protocol: fulu
    base_url: http://127.0.0.1:9101
    credentials: {app_key: k, app_secret: s}
  fulu_east:
    <<: *fulu
    base_url: http://127.0.0.1:9102
"""

    config = parse_config(config_text, {})

    assert config.suppliers["fulu_east"].base_url == "http://127.0.0.1:9102"
    assert config.suppliers["fulu_east"].protocol == "fulu"


def test_yaml_syntax_error_is_one_problem_with_its_position() -> None:
    text = "server:\n  listen: 0.0.0.0:8080\n   public_url: http://x\n"

    assert problems(text) == [("", "invalid YAML at line 3, column 14: mapping values are not allowed here")]


def test_unclosed_flow_mapping_is_a_syntax_error() -> None:
    [(path, message)] = problems("notify:\n  backoff: {initial: 5s, max: 1h\n")

    assert path == ""
    assert message.startswith("invalid YAML at line 3")


def test_several_documents_are_refused() -> None:
    [(path, message)] = problems("store: memory://\n---\nstore: memory://\n")

    assert path == ""
    assert "expected a single document" in message


def test_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    missing = tmp_path / "gateway.yaml"

    with pytest.raises(ConfigError) as caught:
        load_config(missing, {})

    assert caught.value.problems == (Problem("", f"cannot read {missing}: No such file or directory"),)
    assert caught.value.source == str(missing)


def test_file_that_is_not_utf8_is_one_problem(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_bytes(b"store: \xff\n")

    with pytest.raises(ConfigError) as caught:
        load_config(file, {})

    assert len(caught.value.problems) == 1
    assert "not UTF-8" in caught.value.problems[0].message


def test_load_config_reads_the_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text('store: "${GATEWAY_TEST_STORE}"\n')
    monkeypatch.setenv("GATEWAY_TEST_STORE", "memory://")

    assert load_config(str(file)).store == "memory://"


def test_config_error_reads_as_a_list() -> None:
    error = ConfigError([Problem("server.listen", "bad"), Problem("", "whole file")], source="gw.yaml")

    assert str(error) == "gw.yaml: 2 problems\n  server.listen: bad\n  whole file"
    assert str(ConfigError([Problem("store", "bad")])) == "gateway.yaml: 1 problem\n  store: bad"


# Formats


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (("server", "listen"), "server.listen"),
        (
            ("products", "mobile.cmcc.50", "offers", 0, "supplier"),
            'products["mobile.cmcc.50"].offers[0].supplier',
        ),
        (("suppliers", "fulu-east", "codes", "3006"), 'suppliers["fulu-east"].codes["3006"]'),
        (("shops", 'say "hi"'), 'shops["say \\"hi\\""]'),
        (("x.y",), '["x.y"]'),
        ((), ""),
    ],
)
def test_key_paths(path: tuple[str | int, ...], text: str) -> None:
    assert format_key_path(path) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("2s", 2.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("0s", 0.0),
        ("0.1h", 360.0),
    ],
)
def test_durations_round_trip(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["2", "2 s", "-1s", "1d", "s", "1.s", "٣s"])
def test_durations_need_a_plain_number_and_a_unit(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_durations_are_written_in_the_largest_whole_unit() -> None:
    assert [format_duration(s) for s in (0.25, 2.0, 1.5, 300.0, 3600.0, 86400.0, 90.0, 0.0)] == [
        "250ms",
        "2s",
        "1.5s",
        "5m",
        "1h",
        "24h",
        "90s",
        "0s",
    ]


def test_unquoted_dates_stay_strings_for_the_field_to_judge() -> None:
    assert problems("store: 2026-13-45\n") == [
        (
            "store",
            "must be memory://, sqlite:///path or a redis://, rediss:// or redis+cluster:// URL;"
            ' got string "2026-13-45"',
        )
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("store: !!int x\n", "invalid YAML: invalid literal for int() with base 10: 'x'"),
        ("store: !!python/object:os.system {}\n", "invalid YAML at line 1, column 8: could not determine a"),
        ('store: "\x07"\n', "invalid YAML: unacceptable character #x0007"),
    ],
)
def test_values_yaml_cannot_build_are_one_problem(text: str, message: str) -> None:
    [(path, found)] = problems(text)

    assert path == ""
    assert found.startswith(message)
