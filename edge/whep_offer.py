"""What the edge checks and changes in a WHEP offer before aiortc sees it, and which host
candidates aiortc offers in return. Pure, but for `pin_host_addresses`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def offered_kinds(sdp: str) -> tuple[str, ...]:
    """The media kinds an offer asks to receive; ValueError says what is wrong with it."""
    lines = [line.strip() for line in sdp.splitlines() if line.strip()]
    if not lines or lines[0] != "v=0":
        raise ValueError("not an SDP offer: it must start with v=0")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise ValueError("the offer has no DTLS fingerprint (a=fingerprint)")
    kinds: list[str] = []
    kind, receives = "", True
    for line in [*lines, "m=end"]:
        if line.startswith("m="):
            if kind in ("video", "audio") and receives and kind not in kinds:
                kinds.append(kind)
            kind, receives = line[2:].split(" ", 1)[0], True
        elif line in ("a=sendonly", "a=inactive"):
            receives = False
    if not kinds:
        raise ValueError(
            "the offer asks to receive no audio or video (need an m=video or m=audio "
            "section that is recvonly or sendrecv)"
        )
    return tuple(kinds)


def without_mdns_candidates(sdp: str) -> str:
    """The offer without its mDNS (`*.local`) candidates: resolving them means multicast on the
    LAN, and a browser on this host reaches a loopback candidate anyway (and is then known by
    the address its checks come from, a peer-reflexive candidate)."""
    lines = sdp.splitlines(keepends=True)
    return "".join(
        line
        for line in lines
        if not (line.startswith("a=candidate:") and len(line.split()) > 4 and line.split()[4].endswith(".local"))
    )


def pin_host_addresses(addresses: tuple[str, ...]) -> Callable[[], None]:
    """Make aioice gather host candidates on `addresses` only, until the returned `unpin` is
    called. aioice skips loopback and has no option for it, so its address lookup is replaced:
    process-wide, like the interfaces. Pins nest (several edges in one process): the addresses
    of every pin in force are offered, and aioice's own lookup is back once none is."""
    import aioice.ice  # (here: the edge loads aioice only when it has streaming distributions)

    ice: Any = aioice.ice
    if not hasattr(ice, "_cdn_pins"):
        ice._cdn_pins, ice._cdn_original = [], ice.get_host_addresses
    pins: list[tuple[str, ...]] = ice._cdn_pins
    pin = tuple(addresses)
    pins.append(pin)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        pinned = dict.fromkeys(a for p in pins for a in p)
        return [a for a in pinned if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    def unpin() -> None:
        if pin in pins:
            pins.remove(pin)
        if not pins:
            ice.get_host_addresses = ice._cdn_original

    ice.get_host_addresses = host_addresses
    return unpin
