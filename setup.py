# setuptools needs setup() to run cffi's build hook; all metadata is in pyproject.toml
from setuptools import setup

setup(cffi_modules=["logger_system/_ffi_build.py:ffibuilder"])
