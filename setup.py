# setuptools needs setup() to run cffi's build hook; all metadata is in pyproject.toml.
# The extension uses only the limited API (cffi builds it with Py_LIMITED_API, as
# _lsr_native.abi3.so), so one wheel serves CPython 3.11 and every later version: tag it
# cp311-abi3.
from setuptools import setup

setup(
    cffi_modules=["logger_system/_ffi_build.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
