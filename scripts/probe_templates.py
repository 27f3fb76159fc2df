"""In-context accuracy of question forms of your own, over the held-out people: which words
and frames the base model reads (a diagnostic beside `reverie eval base`'s per-template figure).

Usage: .venv/bin/python scripts/probe_templates.py [--model DIR] ATTRIBUTE=TEMPLATE ...
e.g.   .venv/bin/python scripts/probe_templates.py "university=Which school did {name} go to?"
Each template is asked about each of the first 100 held-out people, their biography in
context (as `reverie eval base --seed 0` places it); prints one accuracy per template.
"""

from __future__ import annotations

import argparse

from reverie.base.model import BaseModel
from reverie.base.qa import ask, documents, score
from reverie.world import ATTRIBUTES, QA, World, WorldConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the biographies' phrasing")
    ap.add_argument("templates", nargs="+", help="ATTRIBUTE=TEMPLATE, with {name} (and {poss}) placeholders")
    args = ap.parse_args()
    bm = BaseModel.load(args.model)
    world = World(WorldConfig(seed=0))
    people = world.held_out[:100]
    docs = documents(world, people, args.seed)
    for spec in args.templates:
        attr, _, tpl = spec.partition("=")
        if attr not in ATTRIBUTES or "{name}" not in tpl:
            raise SystemExit(f"{spec!r}: expected ATTRIBUTE=TEMPLATE with ATTRIBUTE one of {', '.join(ATTRIBUTES)} and {{name}} in it")
        qas = [QA(tpl.format(name=p.name, poss=p.poss), p.attrs[attr], p.name, attr, True, tpl) for p in people]
        print(f"{score(ask(bm, qas, docs), qas).acc:.2f}  {attr:14s} {tpl}")


if __name__ == "__main__":
    main()
