"""Sphinx configuration of the bayesslam documentation.

Build (warnings are errors; this is what CI runs, see docs/README.md)::

    python3 -m pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _installed_version

# The docs are built against the real, installed package (no mocked imports, no sys.path edits):
# install it first (python3 -m pip install -e ".[docs]").

# Importing JAX-backed modules here must not try to grab an accelerator or print warnings.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

project = "bayesslam"
author = "bayesslam developers"
copyright = "bayesslam developers"
try:
    release = _installed_version("bayesslam")
except PackageNotFoundError:  # a source tree that is not installed
    release = "0.0.0+unknown"
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]

# Markdown pages (MyST) and the API reference (reStructuredText, for autosummary).
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "README.md", "Thumbs.db", ".DS_Store"]

# --- MyST -------------------------------------------------------------------------------------
# Heading anchors so that the Markdown pages' `#section` links resolve; `$...$` for maths.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# --- API reference ----------------------------------------------------------------------------
# One generated page per module (docs/_templates/autosummary/module.rst), written under
# docs/api/generated/ at each build. A module's public objects are those of its __all__.
# A subpackage's page lists its submodules and documents only what its __init__ itself defines:
# the names it re-exports are documented once, in their submodule's page.
autosummary_generate = True
autosummary_ignore_module_all = False
autosummary_imported_members = False

autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
# Signatures stay as written in the code; numpydoc's Parameters sections carry the types.
autodoc_typehints = "none"
# Nothing is mocked: the pages document the real, importable package.
autodoc_mock_imports: list[str] = []

# numpydoc renders the docstrings; the class pages list members through autodoc, not numpydoc.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# --- Cross-references to other projects --------------------------------------------------------
# No intersphinx: CI and the machines this is built on reach no network but PyPI, and an
# inventory that cannot be downloaded is a warning, i.e. a failed build under -W. Names of numpy,
# JAX, NumPyro, ArviZ, astropy... objects therefore render as code without links. Where the
# network is available, this is the mapping to add (with "sphinx.ext.intersphinx" in extensions):
#
# intersphinx_mapping = {
#     "python": ("https://docs.python.org/3", None),
#     "numpy": ("https://numpy.org/doc/stable", None),
#     "scipy": ("https://docs.scipy.org/doc/scipy", None),
#     "jax": ("https://docs.jax.dev/en/latest", None),
#     "numpyro": ("https://num.pyro.ai/en/stable", None),
#     "arviz": ("https://python.arviz.org/en/stable", None),
#     "astropy": ("https://docs.astropy.org/en/stable", None),
#     "matplotlib": ("https://matplotlib.org/stable", None),
# }
#
# Not nitpicky: a reference that finds no target (an object of another project, a private helper)
# renders as plain code instead of failing the build. References to bayesslam's re-exported names
# are resolved below (_resolve_reexport).
nitpicky = False

# --- HTML -------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"bayesslam {release}"
html_static_path: list[str] = []


# --- Members that are not bayesslam's API --------------------------------------------------------
def _skip_member(app, what, name, obj, skip, options):
    """Leave out the ``set_*_request`` methods that scikit-learn's metadata routing adds to every
    estimator class (SlamTrainer): their docstrings are scikit-learn's, with references into its
    own glossary, and they are not part of bayesslam."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _import_dotted(name):
    """The object a dotted name ``package.module.attr...`` refers to, or None."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _resolve_reexport(app, env, node, contnode):
    """Resolve a reference to a re-exported name to where the object is documented.

    Each object is documented once, in its submodule's page (bayesslam.emulator.modelfile.save_model),
    but the docstrings and pages refer to it by the name users import
    (bayesslam.emulator.save_model). A reference that finds no target is followed to the object's
    own module and name; if that is documented, the link goes there. Only links are added: a
    reference that still finds nothing stays as it was (plain code, no warning: nitpicky is off).
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    candidates = [target] if target.startswith("bayesslam.") else []
    module = node.get("py:module")
    if module and module.startswith("bayesslam"):
        candidates.append(f"{module}.{target}")
    domain = env.get_domain("py")
    for name in candidates:
        obj = _import_dotted(name)
        home, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if not (isinstance(home, str) and home.startswith("bayesslam") and isinstance(qualname, str)):
            continue
        canonical = f"{home}.{qualname}"
        if canonical == name:
            continue
        for reftype in (node["reftype"], "obj"):
            found = domain.resolve_xref(env, node["refdoc"], app.builder, reftype, canonical, node, contnode)
            if found is not None:
                return found
    # Names without a module of their own (constants such as bayesslam.train.PRESETS) and short
    # names of objects imported from elsewhere (SlamTrainer in bayesslam.pipeline): link to the one
    # documented bayesslam object of that name, under the package named if one is; never guess
    # between several.
    if target.startswith("bayesslam."):
        package, _, suffix = target.rpartition(".")
    else:
        package, suffix = "bayesslam", target
    matches = [
        (name, obj)
        for name, obj in domain.find_obj(env, None, None, suffix, "obj", 1)
        if name.startswith(package + ".")
    ]
    if len(matches) == 1:
        return domain.resolve_xref(env, node["refdoc"], app.builder, "obj", matches[0][0], node, contnode)
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("missing-reference", _resolve_reexport)
