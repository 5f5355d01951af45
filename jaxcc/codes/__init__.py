"""Erasure codes over model inputs and outputs, as pure functions."""

from jaxcc.codes._berrut import berrut
from jaxcc.codes._code import Code
from jaxcc.codes._code import LinearMaps
from jaxcc.codes._learned import learned
from jaxcc.codes._concatenation import concatenation
from jaxcc.codes._linear import generator
from jaxcc.codes._linear import linear
from jaxcc.codes._linear import worst_condition
from jaxcc.codes._linear import summation
from jaxcc.codes._spline import search_lambdas
from jaxcc.codes._spline import spline

__all__ = ["Code", "LinearMaps", "generator", "linear", "summation",
           "worst_condition"]
__all__ += ["learned"]
__all__ += ["berrut", "concatenation"]
__all__ += ["search_lambdas", "spline"]
