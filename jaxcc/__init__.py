"""jaxcc: learning-based coded computation for resilient inference in JAX."""

from jaxcc import codes
from jaxcc import erasures
from jaxcc.protect import evaluate_coded
from jaxcc.protect import fit_learned_code
from jaxcc.protect import fit_parity_models

__all__ = ["codes", "erasures", "evaluate_coded", "fit_learned_code",
           "fit_parity_models"]
__version__ = "0.1.0"
