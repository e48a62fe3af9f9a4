#!/usr/bin/env python3
"""Merges passkey_cases.csv files of //eval:longctx runs into one, for `longctx --summarize`.

  eval/longctx_merge.py OUT_DIR BASE_CSV [--replace CSV]... [--append CSV]...

--append CSV: adds the cases of CSV (e.g. a run with more keys per cell, same methods).
--replace CSV: the rows of CSV (e.g. an EMS variant run with --methods) replace the rows of the
    same case and method in BASE_CSV, so the variant is compared with the base run's baselines on
    the same cases; only cases present in CSV are kept (complete comparisons only).
Writes OUT_DIR/passkey_cases.csv."""
import csv
import os
import sys


def rows(path):
    with open(path, newline="") as f:
        r = csv.reader(f)
        return next(r), list(r)


def case_id(row):
    return tuple(row[:4])  # tokens, prompt_tokens, depth, key


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    out, (head, base) = argv[1], rows(argv[2])
    i = 3
    while i + 1 < len(argv):
        flag, path = argv[i], argv[i + 1]
        _, extra = rows(path)
        if flag == "--append":
            base += extra
        elif flag == "--replace":
            new = {(case_id(r), r[4], r[5]): r for r in extra}
            cases = {case_id(r) for r in extra}
            base = [new.get((case_id(r), r[4], r[5]), r) for r in base if case_id(r) in cases]
        else:
            sys.exit(__doc__)
        i += 2
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "passkey_cases.csv"), "w") as f:
        f.write(",".join(head) + "\n")
        for r in base:  # the answer (column 9) quoted as longctx writes it
            r = r[:8] + ['"' + r[8].replace('"', '""') + '"'] + r[9:]
            f.write(",".join(r) + "\n")


if __name__ == "__main__":
    main(sys.argv)
