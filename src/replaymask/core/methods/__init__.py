"""The continual-learning methods, one file each, by their Mammoth names."""

from .base import ContinualMethod, PlainSGD
from .der import DER
from .derpp import DERpp
from .er import ER
from .er_ace import ERACE
from .joint import Joint
from .sgd import SGD
from .xder import XDER

METHOD_CLASSES: dict[str, type[ContinualMethod]] = {
    "sgd": SGD,
    "joint": Joint,
    "er": ER,
    "der": DER,
    "derpp": DERpp,
    "er_ace": ERACE,
    "xder": XDER,
}

__all__ = ["METHOD_CLASSES", "ContinualMethod", "PlainSGD", "DER", "DERpp", "ER", "ERACE",
           "Joint", "SGD", "XDER"]
