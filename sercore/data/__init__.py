"""Corpora: the generated demonstration corpus and the loaders of MSP-Podcast, IEMOCAP and manifests (CSV,
JSON lines).

Every loader returns (table, report): the utterance table of sercore.data.table.COLUMNS and a LoadReport
counting what was kept, repaired and skipped. Audio is read with read_audio (float32 mono, 16 kHz).
ensure_corpus(path) is what pages call first: it generates the demonstration corpus only where the path
is absent or already a generated corpus, and leaves a licensed copy untouched (sercore.data.ensure).
"""

from sercore.data.audio import AudioError, inspect_audio, read_audio
from sercore.data.corpus import detect_layout, load_corpus, load_segments
from sercore.data.ensure import ensure_corpus, is_generated
from sercore.data.iemocap import load_iemocap
from sercore.data.manifest import load_manifest
from sercore.data.msp_podcast import load_msp_podcast
from sercore.data.prosody import CLASS_NAMES, CLASSES
from sercore.data.report import LoadReport
from sercore.data.summary import listening_samples, prosody_summary
from sercore.data.synth import LAYOUTS, VARIANTS, generate_corpus
from sercore.data.table import COLUMNS

__all__ = ["AudioError", "CLASSES", "CLASS_NAMES", "COLUMNS", "LAYOUTS", "LoadReport", "VARIANTS",
           "detect_layout", "ensure_corpus", "generate_corpus", "inspect_audio", "is_generated", "load_corpus",
           "listening_samples", "load_iemocap", "load_manifest", "load_msp_podcast", "load_segments", "prosody_summary",
           "read_audio"]
