"""reverie: a language model that learns from what it reads.

The Python API is :class:`reverie.learner.Learner`; the command line is ``reverie``.
"""

__version__ = "0.1.0"
