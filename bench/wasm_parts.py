#!/usr/bin/env python3
"""Where the wasm client's code goes, by crate: `wasm-objdump -x -j Code` output on stdin.

Reads cargo's wasm (before wasm-bindgen and wasm-opt, which strip the names), adds up each
function's size under the first crate its symbol names (a generic function is counted under
the crate that appears first: `core::ptr::drop_in_place<tachys::...>` is core's), and prints a
Markdown table. wasm-bindgen's describe functions are left out (wasm-bindgen removes them).
Called by bench/size.sh.
"""
import collections
import re
import sys

# Crates of the client, most specific first where one name holds another.
CRATES = [
    "tokenless", "dlmalloc", "hashbrown", "indexmap", "reactive_graph", "tachys", "leptos",
    "futures_util", "futures_channel", "futures_core", "wasm_bindgen_futures", "wasm_bindgen",
    "js_sys", "web_sys", "wasm_streams", "server_fn", "serde_json", "serde", "postcard", "gloo_net",
    "any_spawner", "slotmap", "or_poisoned", "throw_error", "send_wrapper", "rustc_hash", "std",
    "alloc", "core",
]
FUNCTION = re.compile(r"\s*- func\[\d+\] size=(\d+)(?: <(.*)>)?")


def crate_of(symbol):
    """The crate named first in a mangled symbol (legacy `_ZN` or v0 `_R`), or None."""
    first, at = None, len(symbol) + 1
    for crate in CRATES:
        # Legacy and v0 manglings write a path segment as its length then its name.
        for form in (f"{len(crate)}{crate}", f"{crate}.."):
            i = symbol.find(form)
            if 0 <= i < at:
                first, at = crate, i
    return first


def main():
    sizes = collections.Counter()
    for line in sys.stdin:
        m = FUNCTION.match(line)
        if not m:
            continue
        size, symbol = int(m.group(1)), m.group(2) or ""
        if "describe" in symbol and ("WasmDescribe" in symbol or "__wbindgen_describe" in symbol):
            continue
        sizes[crate_of(symbol) or "(other)"] += size
    total = sum(sizes.values())
    if not total:
        sys.exit("bench/wasm_parts.py: no function sizes on stdin (a wasm with a name section?)")
    print("| crate | code bytes | share |")
    print("|---|---:|---:|")
    for crate, size in sizes.most_common():
        print(f"| {crate} | {size:,} | {100 * size / total:.1f} % |")
    print(f"| **total** | **{total:,}** | |")


if __name__ == "__main__":
    main()
