"""sercore: attention mechanisms, corpora, features, models and training for speech emotion recognition.

The library behind the companion book: notebooks call into it, one step per cell.
"""

__version__ = "0.1.0"
