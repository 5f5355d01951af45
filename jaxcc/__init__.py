"""jaxcc: learning-based coded computation for resilient inference in JAX."""

from jaxcc import codes
from jaxcc import erasures

__all__ = ["codes", "erasures"]
__version__ = "0.1.0"
