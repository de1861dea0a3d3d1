"""64-bit JAX inside bayesslam's own calls, without touching the user's global JAX configuration.

The emulator is exact in float64, and the MAP's float64 stage, the
likelihood's sums and the model files are float64. JAX's default is float32,
switched globally by ``jax_enable_x64``. bayesslam never changes that global
setting: its entry points run inside :func:`float64`, a scoped (thread-local)
switch, so they give the same numbers whether or not the user has enabled
64-bit JAX. Arrays they return are numpy arrays.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator, TypeVar

import jax

__all__ = ["float64", "in_float64"]

F = TypeVar("F", bound=Callable)


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """Run the JAX code inside the ``with`` block with 64-bit types enabled.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import bayesslam
    >>> with bayesslam.float64():
    ...     print(jnp.ones(2).dtype)
    float64
    """
    state = getattr(jax, "enable_x64", None)
    if state is None:  # JAX releases before the scoped switch moved out of jax.experimental
        from jax.experimental import enable_x64 as state
    with state(True):
        yield


def in_float64(function: F) -> F:
    """Decorate ``function`` so that it always runs inside :func:`float64`."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with float64():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
