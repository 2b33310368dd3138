"""Builds the C core, ``finercam._core``, from ``csrc/*.c`` (the test program in csrc/tests is not part of it)."""
import glob
import os

import numpy as np
from setuptools import Extension, setup

# CI builds with -Werror (FINERCAM_WERROR=1); users get the warnings without failing their install.
# -pthread: the ranking and masking kernels split their work over POSIX threads (csrc/parallel.c).
compile_args = ["-O3", "-Wall", "-Wextra", "-std=c99", "-fno-strict-aliasing", "-pthread"]
if os.environ.get("FINERCAM_WERROR") == "1":
    compile_args.append("-Werror")

core = Extension(
    "finercam._core",
    sources=sorted(glob.glob(os.path.join("csrc", "*.c"))),
    include_dirs=[np.get_include(), "csrc"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    extra_compile_args=compile_args,
    extra_link_args=["-pthread"],
)

setup(ext_modules=[core])
