"""Commands `generate` (write a generated demonstration corpus) and `corpus` (load any corpus and print
its counts and load report)."""

from __future__ import annotations

import sys
import time
import warnings


def register(subparsers) -> None:
    generate = subparsers.add_parser(
        "generate", help="write the generated demonstration corpus (espeak-ng, offline, deterministic)",
        description="Write a generated demonstration corpus in the MSP-Podcast or IEMOCAP layout.")
    generate.add_argument("--profile", default="smoke", help="smoke, default, paper or a YAML path (sizes)")
    generate.add_argument("--variant", default="standard", choices=["standard", "localized", "long-form"])
    generate.add_argument("--layout", default="msp-podcast", choices=["msp-podcast", "iemocap"])
    generate.add_argument("--out", required=True,
                          help="output folder: new, empty, or left unfinished by an interrupted generate")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--n-utterances", type=int, default=None,
                          help="override the profile's size (long-form: files per length)")
    generate.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    generate.add_argument("--overwrite", action="store_true",
                          help="replace a corpus this generator wrote earlier in --out")
    generate.set_defaults(func=_generate)

    corpus = subparsers.add_parser(
        "corpus", help="load a corpus (MSP-Podcast, IEMOCAP or CSV manifest) and print counts and the report",
        description="Load a corpus of any supported layout and print counts per class, speaker and split, "
                    "then the load report (what was kept, repaired and skipped).")
    corpus.add_argument("root", help="corpus folder, or a CSV manifest file")
    corpus.add_argument("--fold", type=int, default=None, help="IEMOCAP: the Test session (1..5, default 1)")
    corpus.add_argument("--no-check-audio", action="store_true", help="only check that files exist")
    corpus.set_defaults(func=_corpus)


def _generate(args) -> int:
    from sercore.data.render import RenderError
    from sercore.data.synth import MARKER, IncompleteCorpusWarning, generate_corpus

    # Refusals (bad options, a folder the generator did not write, an unknown profile) are ValueError /
    # FileExistsError / FileNotFoundError, which sercore.cli prints as one line.
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IncompleteCorpusWarning)
        try:
            out = generate_corpus(args.out, profile=args.profile, variant=args.variant, layout=args.layout,
                                  seed=args.seed, n_utterances=args.n_utterances, workers=args.workers,
                                  overwrite=args.overwrite)
        except RenderError as error:  # one file failed: the folder is left marked unfinished
            raise SystemExit(f"{error} ({args.out} is left unfinished, with {MARKER}: "
                             "the next generate replaces it)") from None
        finally:
            for warning in caught:  # the replaced unfinished generation: one line, not a warning trace
                if issubclass(warning.category, IncompleteCorpusWarning):
                    print(f"note: {warning.message}", file=sys.stderr)
                else:
                    warnings.showwarning(warning.message, warning.category, warning.filename,
                                         warning.lineno)
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s (see {out / 'corpus.json'})")
    return 0


def _corpus(args) -> int:
    import pandas as pd

    from sercore.data.corpus import detect_layout, load_corpus

    options = {"check_audio": not args.no_check_audio}
    if args.fold is not None:
        if detect_layout(args.root) != "iemocap":
            raise SystemExit("--fold applies to IEMOCAP corpora only")
        options["fold"] = args.fold
    table, report = load_corpus(args.root, **options)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_rows", 200):
        for column in ("label", "speaker", "split"):
            counts = table[column].fillna("(none)").value_counts().sort_index()
            print(f"\nper {column}:")
            print(counts.to_string())
        print("\nclass x split:")
        print(pd.crosstab(table["label"].fillna("(none)"), table["split"]).to_string())
    print()
    print(report)
    return 0
