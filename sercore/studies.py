"""The five studies' names: the one list of them. sercore.train.run, sercore.models and the CLI import it.

Plain Python with no imports, so the command line can offer the choices without loading torch or pandas.
"""

STUDIES = ("fusion", "ks-transformer", "area-cnn", "multitask", "dimensional")
