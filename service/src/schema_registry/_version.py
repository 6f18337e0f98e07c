"""Release identity, rewritten by build_artifact.py for each built release."""

__version__ = "0.0.0.dev0"
# True only in the deliberately broken build used by the release tests.
BROKEN = False
