"""`python -m sercore features`: extract and cache one encoder's features for a whole corpus.

    python -m sercore features --corpus data/smoke --encoder logmel --cache cache/features
    python -m sercore features --corpus data/smoke --encoder logmel --profile paper --preset logmel_area
    python -m sercore features --corpus data/smoke --encoder ssl:/models/wavlm-large --set dtype=float32

Prints the hits, misses and time, so running it twice shows what the cache saves, and the rows whose
audio or features could not be used, by reason (they are left without features, never cached).

SSL and text encoders write the memory-mapped store that `train` reads (sercore.features.store), after the
size check against the free disk and the profile's features.max_cache_gb; log-Mel writes the per-file
cache. A training run keeps only the SSL states its model reads: for the dimensional study (layers
"last") precompute with `--set layers=last`, or `train` computes that store itself.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "features", help="extract frozen features for a corpus into the disk cache",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="corpus folder or manifest CSV (sercore.data.load_corpus)")
    parser.add_argument("--encoder", default="logmel",
                        help="logmel | ssl:<local model dir> | text | text:<local model dir> (default: logmel)")
    parser.add_argument("--cache", help="cache folder (default: the profile's features.cache_dir, else "
                        "$SERCORE_CACHE, else $XDG_CACHE_HOME/sercore, else ~/.cache/sercore)")
    parser.add_argument("--profile", default="smoke", help="profile whose features section gives the settings")
    parser.add_argument("--preset", help="key in the profile's features section holding the encoder settings "
                        "(default: the encoder kind, e.g. logmel; logmel_area is the 128-mel log10 setting)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one encoder setting (value parsed as YAML, 3e-4 as a number); "
                        "repeatable")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def _settings(args) -> tuple[dict, str | None]:
    from sercore.profiles import parse_assignments, section

    features = section(args.profile, "features")
    preset = args.preset or args.encoder.partition(":")[0]
    if args.preset and args.preset not in features:
        raise SystemExit(f"profile {args.profile!r} has no features.{args.preset} "
                         f"(it has: {', '.join(sorted(features)) or 'no features section'})")
    settings = {**(features.get(preset) or {}), **parse_assignments(args.overrides)}
    if preset == "ssl":
        settings.pop("mode", None)  # a training run's choice (sercore.train.online); this command always caches
    return settings, args.cache or features.get("cache_dir")


def _encoder(args) -> str:
    from sercore.profiles import section

    model_dir = section(args.profile, "features").get("ssl_model_dir")
    if args.encoder == "ssl":
        if not model_dir:
            raise SystemExit(f"--encoder ssl needs a local model folder: pass ssl:<dir>, or set "
                             f"features.ssl_model_dir in profile {args.profile!r}")
        return f"ssl:{model_dir}"
    return args.encoder


def run(args) -> int:
    from sercore.data import load_corpus
    from sercore.features import extract

    from sercore.features.cache import cache_dir_or_default

    settings, cache_dir = _settings(args)
    encoder = _encoder(args)
    cache_dir = cache_dir_or_default(cache_dir)
    table, report = load_corpus(args.corpus)
    print(report)
    if encoder.partition(":")[0] in ("ssl", "text"):
        from sercore.features import make_encoder
        from sercore.features.store import extract_to_store
        from sercore.profiles import section

        features = extract_to_store(table, make_encoder(encoder, **settings), cache_dir,
                                    progress=not args.no_progress,
                                    max_gb=section(args.profile, "features").get("max_cache_gb"))
        arrays = [features.shape_of(i) for i in range(len(features)) if features.items[i] is not None]
    else:
        features = extract(table, encoder, cache_dir, progress=not args.no_progress, **settings)
        arrays = [a.shape for a in features if a is not None]
    shapes = sorted({tuple(a[:-2]) + ("T",) + tuple(a[-1:]) for a in arrays})
    print(f"features {encoder}: {features.stats}")
    print(f"cache: {cache_dir}; shapes: {', '.join('x'.join(map(str, s)) for s in shapes)}")
    return 0
