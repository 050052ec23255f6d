"""sercore: attention mechanisms, corpora, features, models and training for speech emotion recognition.

The library behind the companion book: notebooks call into it, one step per cell.
"""

__version__ = "0.1.0"

import warnings

# Without ipywidgets, tqdm.auto falls back to the text bar in Jupyter, which is all sercore needs; its warning
# about that would otherwise open every executed page.
warnings.filterwarnings("ignore", message="IProgress not found")
