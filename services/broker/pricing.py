"""What a Messages API call costs, in USD, from its ``usage``.

Prices are USD per million tokens (MTok), per model family and version, from Anthropic's pricing page
(https://platform.claude.com/docs/en/about-claude/pricing) and the model overview pages
(https://platform.claude.com/docs/en/models/<model>/overview), as read on 2026-11-21. One change is taken from
third-party price trackers rather than Anthropic's page: Sonnet 5.5 cache reads cut from $0.20 to $0.10 per MTok
on 2026-10-07. Not modelled: Batch API discounts (the proxy never sees batches priced), ``inference_geo: "us"``
(×1.1), fast mode, and the long-context tier of Sonnet 4/4.5 is modelled only as its published 200K threshold.

An unknown model is priced at the highest rates in the table (over-counting makes a budget trip early, never
late) and logged once per model name. Update this table, and its date, when Anthropic changes prices.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from services.broker.usage import Usage

log = logging.getLogger("nanoclaw.broker.pricing")
PRICES_AS_OF = "2026-11-21"


@dataclass(frozen=True)
class Price:
    """USD per million tokens. ``long`` applies to every token of a call whose prompt (input + cache reads +
    cache writes) exceeds ``long_above`` tokens (Haiku 5.5: 100K; Sonnet 4/4.5 1M-context: 200K)."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    long: "Price | None" = None
    long_above: int = 0


_OPUS_4_5 = Price(5, 25, 6.25, 10, 0.50)
_OPUS_4 = Price(15, 75, 18.75, 30, 1.50)
_SONNET_3 = Price(3, 15, 3.75, 6, 0.30)
_SONNET_4 = Price(3, 15, 3.75, 6, 0.30, long=Price(6, 22.5, 7.5, 12, 0.60), long_above=200_000)
_FABLE_5 = Price(10, 50, 12.5, 20, 1.00)
_FABLE_5_1 = Price(10, 50, 12.5, 20, 0.25)

# (family, version) → price; version as in the model id ("4-5" → "4.5").
PRICES: dict[tuple[str, str], Price] = {
    ("fable", "5.1"): _FABLE_5_1, ("mythos", "5.1"): _FABLE_5_1,
    ("fable", "5"): _FABLE_5, ("mythos", "5"): _FABLE_5,
    ("opus", "5.5"): Price(4, 20, 5, 8, 0.20),
    **{("opus", v): _OPUS_4_5 for v in ("5", "4.8", "4.7", "4.6", "4.5")},
    **{("opus", v): _OPUS_4 for v in ("4.1", "4", "3")},
    ("sonnet", "5.5"): Price(2, 10, 2.5, 4, 0.10),
    ("sonnet", "5"): Price(2, 10, 2.5, 4, 0.20),
    ("sonnet", "4.6"): _SONNET_3,
    ("sonnet", "4.5"): _SONNET_4, ("sonnet", "4"): _SONNET_4,
    **{("sonnet", v): _SONNET_3 for v in ("3.7", "3.5", "3")},
    ("haiku", "5.5"): Price(0.10, 0.50, 0.125, 0.20, 0.01, long=Price(0.50, 2.50, 0.625, 1.00, 0.05), long_above=100_000),
    ("haiku", "4.5"): Price(1, 5, 1.25, 2, 0.10),
    ("haiku", "3.5"): Price(0.80, 4, 1, 1.6, 0.08),
    ("haiku", "3"): Price(0.25, 1.25, 0.30, 0.50, 0.03),
}
DEFAULT = Price(*(max(getattr(p, f) for p in PRICES.values())
                  for f in ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")))

# claude-opus-4-5-20251101, claude-opus-5-5[1m], claude-sonnet-4-latest
_NEW_STYLE = re.compile(r"^claude-([a-z]+)-(\d+)(?:-(\d))?(?:-\d{8}|-latest)?$")
# claude-3-5-haiku-20241022, claude-3-opus-latest
_OLD_STYLE = re.compile(r"^claude-(\d+)(?:-(\d))?-([a-z]+)(?:-\d{8}|-latest)?$")
_warned: set[str] = set()


def family_version(model: str) -> tuple[str, str] | None:
    """``"claude-sonnet-4-5-20250929"`` → ``("sonnet", "4.5")``; None if the id has no recognisable shape."""
    name = re.sub(r"\[.*\]$", "", model.strip().lower())
    if m := _NEW_STYLE.match(name):
        family, major, minor = m.groups()
    elif m := _OLD_STYLE.match(name):
        major, minor, family = m.groups()
    else:
        return None
    return family, major + (f".{minor}" if minor else "")


def price_for(model: str) -> Price:
    """The price of ``model``, or :data:`DEFAULT` (the highest rates, logged once per model) if unknown."""
    price = PRICES.get(family_version(model) or ("", ""))
    if price is None:
        if model not in _warned:
            _warned.add(model)
            log.warning("no price for model %r: charging the highest known rates (update services/broker/pricing.py)",
                        model)
        return DEFAULT
    return price


def cost_usd(model: str, usage: Usage) -> float:
    """USD for one call. Cache writes split into 1-hour and 5-minute writes when the API reports the split
    (``usage.cache_creation``); otherwise all are priced as 5-minute writes (the default TTL)."""
    price = price_for(model)
    prompt = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    if price.long is not None and prompt > price.long_above:
        price = price.long
    write_1h = min(usage.cache_write_1h_tokens, usage.cache_creation_input_tokens)
    write_5m = usage.cache_creation_input_tokens - write_1h
    micro = (usage.input_tokens * price.input + usage.output_tokens * price.output + write_5m * price.cache_write_5m
             + write_1h * price.cache_write_1h + usage.cache_read_input_tokens * price.cache_read)
    return round(micro / 1_000_000, 10)  # sub-nano-dollar noise from float products is not money
