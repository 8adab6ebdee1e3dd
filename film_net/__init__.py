"""FILM (Reda et al., "FILM: Frame Interpolation for Large Motion", ECCV 2022) in PyTorch,
laid out like the official film_net: options, feature extractor, pyramid flow estimator,
fusion, interpolator, util; plus the official weights' names, their conversion, their
files (written atomically, film_net.files), and recursive midpoint interpolation of a
sequence of keyframes."""

from film_net.interpolator import FilmNet
from film_net.options import TINY_OPTIONS, FilmOptions
from film_net.recursive import interpolate
from film_net.weights import load, save, state_dict_from_tf

__all__ = [
    "TINY_OPTIONS",
    "FilmNet",
    "FilmOptions",
    "interpolate",
    "load",
    "save",
    "state_dict_from_tf",
]
