"""Reads callgrind profiles for bench/instructions.sh.

  instructions.py total N WARM.out WARM+N.out LABEL
      a Markdown row: LABEL | instructions per request ((totals of the second - the first) / N)
  instructions.py parts N A_WARM.out A_MORE.out A_LABEL [B_WARM.out B_MORE.out B_LABEL]
      a Markdown table: each part's own instructions per request (thousands), by crate
  instructions.py allocations N WARM.out WARM+N.out LABEL
      a Markdown row: LABEL | calls to Rust's allocator that get memory (alloc, alloc_zeroed,
      realloc) per request, whatever allocator is behind them (mimalloc, glibc)
  instructions.py top N WARM.out WARM+N.out [COUNT]
      the COUNT functions with the most own instructions per request
"""
import re
import subprocess
import sys

LINE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*)$")


def totals(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    sys.exit(f"{path}: no totals line (not a callgrind profile?)")


ALLOCATING = ("__rust_alloc", "__rust_alloc_zeroed", "__rust_realloc")


def allocation_calls(path):
    """Calls to Rust's allocator shims, counted from the call records of a callgrind profile."""
    names, calls, current = {}, 0, None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(("cfn=", "cfi=", "fn=")):
                key, _, rest = line.rstrip("\n").partition("=")
                if key == "cfi":
                    continue
                ident, _, name = rest.partition(" ")
                if name:
                    names[ident] = name
                if key == "cfn":
                    current = names.get(ident, ident)
            elif line.startswith("calls=") and current is not None:
                if current.rsplit("::", 1)[-1] in ALLOCATING:
                    calls += int(line[6:].split()[0])
                current = None
    return calls


def own_costs(path):
    """Each function's own (exclusive) instructions, read through callgrind_annotate."""
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--inclusive=no", "--auto=no", path],
        check=True, capture_output=True, text=True, errors="replace").stdout
    costs = {}
    started = False
    for line in out.splitlines():
        if "file:function" in line:
            started = True
            continue
        if not started:
            continue
        m = LINE.match(line)
        if not m:
            continue
        name = m.group(2).strip()
        costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    if not costs:
        sys.exit(f"{path}: callgrind_annotate listed no functions")
    return costs


def difference(warm, more, n):
    a, b = own_costs(warm), own_costs(more)
    return {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}


ALLOCATOR = {"malloc", "free", "realloc", "calloc", "cfree", "posix_memalign", "aligned_alloc",
             "_int_malloc", "_int_free", "malloc_consolidate", "__libc_malloc", "__libc_free"}


def is_allocator(function):
    function = function.removeprefix("__rustc::")
    if "::" in function:
        return crate_of(function) in ("mimalloc", "libmimalloc_sys")
    return (function in ALLOCATOR or function.startswith(("mi_", "_mi_", "__rust_alloc", "__rust_dealloc",
                                                          "__rust_realloc", "__rdl_", "__rg_")))


def is_memmove(function):
    return "::" not in function and any(n in function for n in ("memmove", "memcpy", "memset"))


# Each part of a request and the crates whose code it is.
PARTS = [
    ("reactive_graph (owners, signals, contexts)", {"reactive_graph"}),
    ("tachys (rendering)", {"tachys"}),
    ("leptos, leptos_axum, leptos_meta, leptos_router, server_fn",
     {"leptos", "leptos_axum", "leptos_meta", "leptos_router", "leptos_server", "server_fn", "hydration_context",
      "any_spawner", "throw_error"}),
    ("std, core, alloc (formatting, collections, hashing)", {"core", "alloc", "std", "hashbrown"}),
    ("serde, serde_json, postcard", {"serde", "serde_json", "postcard", "serde_core"}),
    ("reqwest (the upstream call)", {"reqwest"}),
    ("the cookie: parse, base64, AES-GCM", {"aes_gcm", "aes", "ghash", "polyval", "base64", "cookie", "percent_encoding"}),
    ("the auth layer (tokenless_bff, and sha2 for the refresh memory's keys)", {"tokenless_bff", "sha2"}),
    ("the app's own code", {"tokenless", "probe"}),
    ("tokio, hyper, axum, tower, futures, http",
     {"tokio", "hyper", "hyper_util", "axum", "axum_core", "tower", "tower_http", "tower_cookies", "futures_util",
      "futures_core", "futures_channel", "futures_executor", "futures", "http", "http_body", "http_body_util", "bytes",
      "mio", "h2", "httparse", "pin_project_lite"}),
]
CRATES = {crate: label for label, crates in PARTS for crate in crates}
STD = {"core", "alloc", "std"}
PRIMITIVE = {"str", "char", "bool", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
             "i128", "isize", "f32", "f64"}


def first_crate(path):
    f = path
    for prefix in ("<", "&", "*", "dyn ", "mut ", "const ", "(", "["):
        while f.startswith(prefix):
            f = f[len(prefix):]
    return f.split("::", 1)[0].split("<", 1)[0].split(" ", 1)[0]


def type_crate(path):
    """The crate of a type's path: `str`, `char`, `[T]`... are core's."""
    return "core" if first_crate(path) in PRIMITIVE or path.lstrip("<").startswith("[") else first_crate(path)


def crate_of(function):
    """The crate a function's code comes from. `<A as B>::f` is an impl: it lives in B's crate
    when A is a type of another crate's (orphan rule), in A's when B is a std trait."""
    if function.startswith("<") and " as " in function:
        own, trait = function[1:].split(" as ", 1)
        trait_crate = first_crate(trait)
        return type_crate(own) if trait_crate in STD else trait_crate
    return type_crate(function)


def group(name):
    obj = ""
    if name.endswith("]") and " [" in name:
        name, obj = name.rsplit(" [", 1)
    function = name.split(":", 1)[1] if ":" in name and not name.startswith("<") else name
    if is_allocator(function):
        return "allocator"
    if is_memmove(function):
        return "memmove / memcpy / memset"
    crate = crate_of(function)
    if crate in CRATES:
        return CRATES[crate]
    if "libc" in obj or "ld-linux" in obj:
        return "libc (other)"
    return "other"


def parts(n, profiles):
    columns = []
    for warm, more, label in profiles:
        grouped = {}
        for name, cost in difference(warm, more, n).items():
            g = group(name)
            grouped[g] = grouped.get(g, 0) + cost
        total = (totals(more) - totals(warm)) / n
        columns.append((label, grouped, total))
    rows = sorted({g for _, grouped, _ in columns for g in grouped}, key=lambda g: -columns[0][1].get(g, 0))
    print("| part | " + " | ".join(label for label, _, _ in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for g in rows:
        values = [grouped.get(g, 0) / 1000 for _, grouped, _ in columns]
        if all(abs(v) < 0.5 for v in values):
            continue
        print(f"| {g} | " + " | ".join(f"{v:,.1f}" for v in values) + " |")
    print("| **total** | " + " | ".join(f"**{t / 1000:,.1f}**" for _, _, t in columns) + " |")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    mode, n = sys.argv[1], int(sys.argv[2])
    if mode == "total":
        warm, more, label = sys.argv[3:6]
        print(f"| {label} | {(totals(more) - totals(warm)) / n:,.0f} |")
    elif mode == "allocations":
        warm, more, label = sys.argv[3:6]
        print(f"| {label} | {(allocation_calls(more) - allocation_calls(warm)) / n:,.0f} |")
    elif mode == "parts":
        rest = sys.argv[3:]
        if len(rest) % 3:
            sys.exit("parts: profiles come in threes (WARM.out MORE.out LABEL)")
        parts(n, [tuple(rest[i:i + 3]) for i in range(0, len(rest), 3)])
    elif mode == "top":
        warm, more = sys.argv[3:5]
        count = int(sys.argv[5]) if len(sys.argv) > 5 else 30
        costs = difference(warm, more, n)
        for name, cost in sorted(costs.items(), key=lambda kv: -kv[1])[:count]:
            print(f"{cost:12,.0f}  {name[:160]}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
