# cffi_modules has no pyproject.toml key yet; everything else lives there.
from setuptools import setup

setup(cffi_modules=["src/flowprobe/_build_cmeter.py:ffibuilder"])
