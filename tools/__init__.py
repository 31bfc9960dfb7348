"""The command-line tools: ``python tools/<tool>.py`` in a checkout, the ``reid-*`` commands (this
folder installed as ``reid.tools``) after ``pip install``."""
