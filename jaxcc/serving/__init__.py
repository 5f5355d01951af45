"""Coded prediction serving: a frontend that rebuilds late predictions.

See docs/SERVING.md. Backends: `LocalPool` (worker processes on this
machine) and Ray Serve (`jaxcc.serving.ray_backend`, needs `ray[serve]`).
"""

from jaxcc.serving._adaptive import Adaptive
from jaxcc.serving._bench import System
from jaxcc.serving._bench import build_system
from jaxcc.serving._experiment import run as run_experiment
from jaxcc.serving._experiment import served_system
from jaxcc.serving._experiment import table as experiment_table
from jaxcc.serving._faults import Faults
from jaxcc.serving._faults import Injector
from jaxcc.serving._faults import schedule
from jaxcc.serving._frontend import Frontend
from jaxcc.serving._frontend import Prediction
from jaxcc.serving._frontend import SOURCES
from jaxcc.serving._http import Client
from jaxcc.serving._http import Endpoint
from jaxcc.serving._http import HttpError
from jaxcc.serving._http import HttpServer
from jaxcc.serving._http import serve_http
from jaxcc.serving._local import LocalPool
from jaxcc.serving._pool import InstanceFailed
from jaxcc.serving._pool import SharedQueuePool
from jaxcc.serving._served import Served
from jaxcc.serving._served import flax_model
from jaxcc.serving._served import flax_module
from jaxcc.serving._served import from_model
from jaxcc.serving._served import from_workdir
from jaxcc.serving._served import linear
from jaxcc.serving._served import linear_model
from jaxcc.serving._served import with_code
from jaxcc.serving._sweep import pivot as sweep_pivot
from jaxcc.serving._sweep import run as run_sweep
from jaxcc.serving._sweep import table as sweep_table

__all__ = ["Adaptive", "Client", "Endpoint", "Faults", "Frontend", "HttpError",
           "HttpServer", "InstanceFailed", "Injector", "LocalPool",
           "Prediction", "SOURCES", "Served", "SharedQueuePool", "System",
           "build_system", "experiment_table", "flax_model", "flax_module",
           "from_model", "from_workdir", "linear", "linear_model",
           "run_experiment", "run_sweep", "schedule", "served_system",
           "serve_http", "sweep_pivot", "sweep_table", "with_code"]
