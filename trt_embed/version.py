"""The package version, in a module of its own so that any module can read it without importing the package's
lazy facade (`trt_embed.Runtime`), which would import the runtime back."""

__version__ = "0.3.0"
