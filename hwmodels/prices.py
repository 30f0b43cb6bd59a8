"""Price catalogue: what one device costs per hour, rented on demand or bought and amortised.

One YAML file per device in ``hwmodels/data/prices/`` (file stem = the device's catalogue name),
each figure with its source and the date it was read. Units: US dollars (USD) and hours.
A user's file is accepted wherever a price is looked up (``get_price("my_prices.yaml")``), and
:func:`register_price` lets a planner override a shipped entry for one session.

The amortised rate is ``purchase_usd / (amortisation_years * 8766 h) + hosting_usd_per_hour``;
``hosting_usd_per_hour`` (power, cooling, rack space) is part of the file, not derived here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmsim.hwmodels.devices import get_device
from llmsim.workloads.catalogue import Catalogue, is_path
from llmsim.workloads.errors import ConfigError, UnknownNameError
from llmsim.workloads.yamlio import check_fields

__all__ = ["HOURS_PER_YEAR", "PRICE_BASES", "DevicePrice", "get_price", "list_prices", "register_price",
           "unregister_price", "usd_per_million_tokens"]

#: Hours in a Julian year (365.25 days x 24 h).
HOURS_PER_YEAR = 8766.0
#: How an hourly rate is reckoned: rented on demand, or bought and amortised.
PRICE_BASES: tuple[str, ...] = ("on_demand", "amortised")


@dataclass(frozen=True)
class DevicePrice:
    """Hourly cost of one device (USD/h), with where each figure comes from.

    ``on_demand_usd_per_hour`` is the rent of one device (a node's rate divided by its devices);
    ``purchase_usd`` the price of one device including its share of the host; either may be None
    where no public figure exists (then that basis cannot be used for this device)."""

    device: str
    on_demand_usd_per_hour: float | None
    on_demand_source: str
    on_demand_date: str
    purchase_usd: float | None
    purchase_source: str
    purchase_date: str
    amortisation_years: float
    hosting_usd_per_hour: float
    hosting_source: str
    notes: str = ""

    @property
    def amortised_usd_per_hour(self) -> float | None:
        """Purchase spread over the amortisation period, plus hosting (USD/h); None without a purchase price."""
        if self.purchase_usd is None:
            return None
        return self.purchase_usd / (self.amortisation_years * HOURS_PER_YEAR) + self.hosting_usd_per_hour

    def usd_per_hour(self, basis: str = "on_demand") -> float:
        """The hourly rate on ``basis`` ('on_demand' or 'amortised'); ConfigError if this device has none."""
        if basis not in PRICE_BASES:
            raise ConfigError(f"price basis must be one of {', '.join(PRICE_BASES)}, got {basis!r}")
        rate = self.on_demand_usd_per_hour if basis == "on_demand" else self.amortised_usd_per_hour
        if rate is None:
            other = "amortised" if basis == "on_demand" else "on_demand"
            raise ConfigError(f"no {basis} price for device {self.device!r}; use --price-basis {other} "
                              f"or give a price file with `{'on_demand_usd_per_hour' if basis == 'on_demand' else 'purchase_usd'}`")
        return rate


_REQUIRED = ("schema_version", "device", "amortisation_years", "hosting_usd_per_hour", "hosting_source")
_OPTIONAL = ("on_demand_usd_per_hour", "on_demand_source", "on_demand_date", "purchase_usd", "purchase_source",
             "purchase_date", "notes")


def _money(data: dict, key: str, where: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: `{key}` must be a non-negative number of USD, got {value!r}")
    return float(value)


def _text(data: dict, key: str, where: str, needed: bool) -> str:
    value = data.get(key, "")
    if not isinstance(value, str) or (needed and not value.strip()):
        raise ConfigError(f"{where}: `{key}` must name the source and date of the figure it goes with")
    return value.strip()


def _parse_price(data: Any, where: str) -> list[tuple[str, DevicePrice, tuple[str, ...]]]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a price file must be a mapping, got {type(data).__name__}")
    check_fields(data, where, required=_REQUIRED, optional=_OPTIONAL)
    if data["schema_version"] != 1:
        raise ConfigError(f"{where}: unsupported schema_version {data['schema_version']!r} (expected 1)")
    device = data["device"]
    if not isinstance(device, str) or not device.strip():
        raise ConfigError(f"{where}: `device` must be a device name, got {device!r}")
    on_demand, purchase = _money(data, "on_demand_usd_per_hour", where), _money(data, "purchase_usd", where)
    if on_demand is None and purchase is None:
        raise ConfigError(f"{where}: give `on_demand_usd_per_hour` or `purchase_usd` (or both)")
    years = data["amortisation_years"]
    if isinstance(years, bool) or not isinstance(years, (int, float)) or not years > 0:
        raise ConfigError(f"{where}: `amortisation_years` must be a positive number, got {years!r}")
    hosting = _money(data, "hosting_usd_per_hour", where)
    price = DevicePrice(
        device=device.strip(), on_demand_usd_per_hour=on_demand,
        on_demand_source=_text(data, "on_demand_source", where, on_demand is not None),
        on_demand_date=_text(data, "on_demand_date", where, on_demand is not None),
        purchase_usd=purchase,
        purchase_source=_text(data, "purchase_source", where, purchase is not None),
        purchase_date=_text(data, "purchase_date", where, purchase is not None),
        amortisation_years=float(years), hosting_usd_per_hour=hosting or 0.0,
        hosting_source=_text(data, "hosting_source", where, True), notes=_text(data, "notes", where, False))
    return [(price.device, price, ())]


CATALOGUE: Catalogue[DevicePrice] = Catalogue.from_folder("price", "llmsim.hwmodels", "data/prices", _parse_price)


def get_price(device: str | Path) -> DevicePrice:
    """The price entry of a device (loose name, or a user's price file by path).

    A device is looked up by its catalogue name (``get_device(name).name``), so aliases work."""
    if is_path(device):
        return CATALOGUE.load_path(device)
    name = str(device)
    try:
        name = get_device(name).name
    except (ConfigError, UnknownNameError):
        pass
    base = name.split("@", 1)[0]
    if base not in CATALOGUE:
        raise ConfigError(f"no price for device {name!r}; priced devices: {', '.join(list_prices())}. "
                          f"Give one with a price file (see hwmodels/data/prices/README.md) or register_price()")
    return CATALOGUE.get(base)


def list_prices() -> tuple[str, ...]:
    """Devices with a price entry."""
    return CATALOGUE.names()


def register_price(price: DevicePrice) -> None:
    """Add a price for this process (a planner's own rate); a shipped device must be unregistered first."""
    if not isinstance(price, DevicePrice):
        raise ConfigError(f"register_price takes a DevicePrice, got {type(price).__name__}")
    CATALOGUE.register(price.device, price, ())


def unregister_price(device: str) -> None:
    """Remove a price added with :func:`register_price`."""
    CATALOGUE.unregister(device)


def usd_per_million_tokens(usd_per_hour: float, tokens_per_s: float) -> float:
    """Dollars per million tokens of a deployment costing ``usd_per_hour`` that serves ``tokens_per_s``."""
    if not tokens_per_s > 0:
        return math.inf
    return usd_per_hour / 3600.0 / tokens_per_s * 1e6
