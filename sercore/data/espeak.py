"""A small ctypes binding to the espeak-ng library shipped in the PyPI package espeakng-loader.

Only the calls the corpus generator needs: initialise once per process in synchronous mode (the
library then hands every block of samples to our callback before espeak_Synth returns), pick a voice
("en-us+f2": language + voice variant), set prosody parameters, and synthesise UTF-8 text.

Semantics of the parameters (espeak-ng speak_lib.h):
    rate     words per minute, 80..450 (175 is espeak's default)
    volume   0..200 in practice, 100 is normal; scales the amplitude
    pitch    base pitch 0..100, 50 is the voice's normal base
    range    pitch range 0..100, 0 is monotone, 50 normal
    wordgap  extra pause between words in units of 10 ms at the default speed

espeak-ng keeps global state, so one process holds one synthesiser: the generator's worker processes each
call `Synthesizer()` once and reuse it.

Noise: voices whose variant file sets `breath` (f2, f3 and f5 in espeak-ng-data/voices/!v/) mix in breath
noise from espeak's own random generator, which espeak_Initialize seeds from the clock (time(NULL) in
espeak-ng's speech.c). Left alone, the same call gives different samples in every process. `synthesize`
therefore reseeds that generator (espeak_ng_SetRandSeed) before every synthesis with the caller's
`noise_seed`: equal calls in equal library states give equal samples.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

# espeak_AUDIO_OUTPUT: PLAYBACK=0, RETRIEVAL=1, SYNCHRONOUS=2, SYNCH_PLAYBACK=3
AUDIO_OUTPUT_SYNCHRONOUS = 2
# Initialise option: report errors instead of calling exit() inside the library.
INITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
SSML = 0x10
# espeak_PARAMETER codes
RATE, VOLUME, PITCH, RANGE, WORDGAP = 1, 2, 3, 4, 7
EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)


class EspeakError(RuntimeError):
    """espeak-ng could not be loaded or refused a request."""


@dataclass(frozen=True)
class Prosody:
    """One setting of espeak's prosody parameters (see the module docstring for units)."""

    rate: int = 175
    volume: int = 100
    pitch: int = 50
    range: int = 50
    wordgap: int = 0

    def clipped(self) -> "Prosody":
        """The same setting forced into the ranges espeak accepts."""
        return Prosody(rate=int(np.clip(self.rate, 80, 450)), volume=int(np.clip(self.volume, 5, 200)),
                       pitch=int(np.clip(self.pitch, 0, 100)), range=int(np.clip(self.range, 0, 100)),
                       wordgap=int(np.clip(self.wordgap, 0, 100)))


_lock = threading.Lock()
_instance: "Synthesizer | None" = None


class Synthesizer:
    """The process's espeak-ng synthesiser. Construct it freely: the library is initialised only once."""

    def __new__(cls):
        global _instance
        with _lock:
            if _instance is None:
                obj = super().__new__(cls)
                obj._start()
                _instance = obj
            return _instance

    def _start(self) -> None:
        try:
            import espeakng_loader
        except ImportError as error:
            raise EspeakError("the corpus generator needs the PyPI package espeakng-loader "
                              "(pip install espeakng-loader)") from error
        library_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
        try:
            lib = ctypes.CDLL(library_path)
        except OSError as error:
            raise EspeakError(f"cannot load espeak-ng from {library_path}: {error}") from error
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        try:
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        except AttributeError as error:  # without it the breath noise cannot be made reproducible
            raise EspeakError(f"{library_path} has no espeak_ng_SetRandSeed, needed for reproducible breath "
                              "noise: install an espeakng-loader whose espeak-ng has it (1.52 does)") from error
        lib.espeak_ng_SetRandSeed.restype = ctypes.c_int

        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data path {data_path}")
        self.sample_rate = int(rate)
        self._lib = lib
        self._chunks: list[bytes] = []

        def collect(wav, n_samples, _events):
            if n_samples > 0 and wav:
                self._chunks.append(ctypes.string_at(wav, n_samples * 2))
            return 0  # 0 = keep synthesising

        # Keep a reference: ctypes would free the trampoline and espeak would call into garbage.
        self._callback = _SYNTH_CALLBACK(collect)
        lib.espeak_SetSynthCallback(self._callback)

    def select_voice(self, voice: str) -> None:
        with _lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
                raise EspeakError(f"espeak-ng has no voice {voice!r}")

    def synthesize(self, text: str, voice: str, prosody: Prosody = Prosody(), ssml: bool = False,
                   noise_seed: int = 0) -> np.ndarray:
        """Speak `text` with `voice` (e.g. "en-us+f2") -> int16 samples at `self.sample_rate`; espeak's noise
        generator (breath noise) is seeded with `noise_seed` first (see the module docstring)."""
        lib = self._lib
        with _lock:
            if lib.espeak_ng_SetRandSeed(int(noise_seed)) != EE_OK:
                raise EspeakError(f"espeak_ng_SetRandSeed({noise_seed}) failed")
            if lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
                raise EspeakError(f"espeak-ng has no voice {voice!r}")
            # Voice first: selecting a voice may reset prosody parameters.
            p = prosody.clipped()
            for code, value in ((RATE, p.rate), (VOLUME, p.volume), (PITCH, p.pitch), (RANGE, p.range),
                                (WORDGAP, p.wordgap)):
                if lib.espeak_SetParameter(code, value, 0) != EE_OK:
                    raise EspeakError(f"espeak_SetParameter({code}, {value}) failed")
            data = text.encode("utf-8") + b"\0"
            self._chunks = []
            flags = CHARS_UTF8 | (SSML if ssml else 0)
            status = lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, flags, None, None)
            if status != EE_OK:
                raise EspeakError(f"espeak_Synth failed with status {status} for text {text[:60]!r}")
            lib.espeak_Synchronize()
            samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16).copy()
            self._chunks = []
        return samples
