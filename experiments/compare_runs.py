"""Compares two finished run workdirs bit for bit (e.g. the demo before and after a change).

    python experiments/compare_runs.py runs/demo_before runs/demo_after

Every results.json field except the volatile ones (timings, environment, memory) and every
array of membership.npz and samples.npz (when both have it) must be equal (`np.array_equal`);
fields present in only one are listed (new fields are expected after a feature). Exits 1
on any difference in a field both have.
"""

import json
import os
import sys

import numpy as np

VOLATILE = {"wall_seconds", "phase_seconds", "resumed_from_round", "memory", "environment"}


def compare(a: str, b: str) -> int:
    ra, rb = (json.load(open(os.path.join(d, "results.json"))) for d in (a, b))
    bad = 0
    for key in sorted((set(ra) | set(rb)) - VOLATILE):
        if key not in ra or key not in rb:
            print(f"only in {'b' if key in rb else 'a'}: {key}")
        elif ra[key] != rb[key] and key != "config":
            bad += 1
            print(f"differs: results.json {key}")
    for name in ("membership.npz", "samples.npz"):
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        if not (os.path.exists(pa) and os.path.exists(pb)):
            continue
        na, nb = np.load(pa), np.load(pb)
        for field in sorted(set(na.files) | set(nb.files)):
            if field not in na.files or field not in nb.files:
                bad += 1
                print(f"differs: {name} {field} (missing on one side)")
            elif not np.array_equal(na[field], nb[field]):
                bad += 1
                print(f"differs: {name} {field}")
    print("identical" if not bad else f"{bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(compare(sys.argv[1], sys.argv[2]))
