"""Price catalogue: shipped entries carry sources, amortisation is arithmetic, bad files are named."""
import math

import pytest

from llmsim.hwmodels.prices import (HOURS_PER_YEAR, DevicePrice, get_price, list_prices, register_price,
                                    unregister_price, usd_per_million_tokens)
from llmsim.workloads.errors import ConfigError


def test_every_shipped_price_names_its_sources():
    assert "h100-sxm" in list_prices()
    for name in list_prices():
        price = get_price(name)
        assert price.on_demand_usd_per_hour is not None or price.purchase_usd is not None
        if price.on_demand_usd_per_hour is not None:
            assert price.on_demand_source and price.on_demand_date
        if price.purchase_usd is not None:
            assert price.purchase_source and price.purchase_date
        assert price.hosting_source


def test_alias_resolves_to_the_device_entry():
    assert get_price("h100").device == "h100-sxm"


def test_amortised_rate_spreads_the_purchase_and_adds_hosting():
    p = DevicePrice("x", None, "", "", 8766.0, "s", "d", 1.0, 0.5, "h")
    assert p.amortised_usd_per_hour == pytest.approx(1.0 + 0.5)
    assert p.usd_per_hour("amortised") == pytest.approx(1.5)
    with pytest.raises(ConfigError, match="no on_demand price"):
        p.usd_per_hour("on_demand")
    assert HOURS_PER_YEAR == 365.25 * 24


def test_dollars_per_million_tokens():
    assert usd_per_million_tokens(3.6, 1000.0) == pytest.approx(1.0)
    assert math.isinf(usd_per_million_tokens(3.6, 0.0))


def test_user_file_and_errors(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("schema_version: 1\ndevice: mydev\non_demand_usd_per_hour: 2\non_demand_source: quote\n"
                    "on_demand_date: '2026-11'\namortisation_years: 3\nhosting_usd_per_hour: 0\nhosting_source: none\n")
    assert get_price(str(good)).usd_per_hour() == 2.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\ndevice: mydev\non_demand_usd_per_hour: 2\namortisation_years: 3\n"
                   "hosting_usd_per_hour: 0\nhosting_source: none\n")
    with pytest.raises(ConfigError, match="on_demand_source"):
        get_price(str(bad))
    with pytest.raises(ConfigError, match="no price for device"):
        get_price("no-such-device-xyz")


def test_register_and_unregister():
    register_price(DevicePrice("toy-dev", 1.0, "s", "d", None, "", "", 3.0, 0.0, "h"))
    try:
        assert get_price("toy-dev").usd_per_hour() == 1.0
    finally:
        unregister_price("toy-dev")
    assert "toy-dev" not in list_prices()
