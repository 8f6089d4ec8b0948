"""textxfer: labeled text in, a trained, evaluated, saved text classifier out, by transfer learning.

    from textxfer import load_recipe, train, load_classifier
"""
from ._version import __version__  # noqa: F401  (textxfer.__version__)
__all__ = ["load_recipe", "train", "load_classifier", "TextxferError"]


def __getattr__(name):
    # Lazy: `import textxfer` stays cheap, and `python -m textxfer.train` does not import the
    # package's training module twice.
    if name == "load_recipe":
        from .config import load_recipe
        return load_recipe
    if name == "train":
        from .training.trainer import train
        return train
    if name == "load_classifier":
        from .inference import load_classifier
        return load_classifier
    if name == "TextxferError":
        from .errors import TextxferError
        return TextxferError
    raise AttributeError(f"module 'textxfer' has no attribute {name!r}")
