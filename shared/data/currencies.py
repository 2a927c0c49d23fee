"""ISO 4217 alphabetic codes: the currencies a purchase can be paid in, and the rest.

Source: ISO 4217 List One ("Current currency & funds code list"), published by SIX Group,
ISO's maintenance agency, as it stands in 2025 after the amendments that took effect by
2025-03-31 (XCG, the Caribbean guilder, in use from that day). Written from knowledge of the
standard (no network access here) and checked against Debian's iso-codes 4.15.0
(/usr/share/iso-codes/json/iso_4217.json), updated for the changes since that release:
HRK withdrawn (Croatia uses EUR since 2023), ZWL replaced by ZWG (2024), XCG and XAD added.
Codes List One still held then though being phased out (ANG next to XCG, SLL next to SLE,
CUC) are kept, and so is BGN (Bulgaria moves to EUR on 2026-01-01): refusing a purchase in
a currency shoppers may still pay in would lose it, accepting a late one harms nothing.
Update this module when SIX publishes an amendment (BGN, ANG and SLL are the next to go).

What a purchase may name (``CURRENCIES``): the codes of List One that are money shoppers
pay in, including the real X-currencies (XAF and XOF, the CFA francs; XCD, the East
Caribbean dollar; XPF, the CFP franc; XCG). Refused, though ISO lists them
(``NOT_CURRENCIES``): precious metals (XAU, XAG, XPT, XPD), units of account and bond-market
units (XDR, XSU, XUA, XAD, XBA-XBD), the testing code XTS, XXX ("no currency"), and the fund
codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW: indexed units and next-day dollars that
price contracts, not goods in a shop).
"""

from __future__ import annotations

# Rows by initial letter, sorted (fmt: off keeps them so, for review against the list).
# fmt: off
CURRENCIES: frozenset[str] = frozenset({
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN",
    "BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN",
    "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUC", "CUP", "CVE", "CZK",
    "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR",
    "FJD", "FKP",
    "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF",
    "IDR", "ILS", "INR", "IQD", "IRR", "ISK",
    "JMD", "JOD", "JPY",
    "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT",
    "LAK", "LBP", "LKR", "LRD", "LSL", "LYD",
    "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN",
    "NAD", "NGN", "NIO", "NOK", "NPR", "NZD",
    "OMR",
    "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG",
    "QAR",
    "RON", "RSD", "RUB", "RWF",
    "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS", "SRD", "SSP",
    "STN", "SVC", "SYP", "SZL",
    "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
    "UAH", "UGX", "USD", "UYU", "UZS",
    "VED", "VES", "VND", "VUV",
    "WST",
    "XAF", "XCD", "XCG", "XOF", "XPF",
    "YER",
    "ZAR", "ZMW", "ZWG",
})

NOT_CURRENCIES: frozenset[str] = frozenset({
    "XAG", "XAU", "XPD", "XPT",  # precious metals
    "XAD", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA",  # units of account
    "XTS", "XXX",  # testing, no currency
    "BOV", "CHE", "CHW", "CLF", "COU", "MXV", "USN", "UYI", "UYW",  # fund codes
})
# fmt: on
