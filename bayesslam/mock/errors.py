"""Named exceptions of the mock-survey generator.

Both derive from :class:`bayesslam.errors.BayesSlamError`, so a pipeline that
catches every bayesslam error also catches these.
"""

from __future__ import annotations

from bayesslam.errors import BayesSlamError

__all__ = ["LabelRangeError", "TemplateModelError"]


class LabelRangeError(BayesSlamError, ValueError):
    """Labels lie outside the range where the template model (or a relation) is valid."""


class TemplateModelError(BayesSlamError, ValueError):
    """A template-model file is missing, of an unknown schema, or inconsistent."""
