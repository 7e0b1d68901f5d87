"""Packaging hook: puts the qlr._compiler extension of a built tree into the
package (pyproject.toml has the metadata). The extension is taken from
$QLR_BUILD_DIR/python/qlr, else ../build/python/qlr; without one the package
is pure Python (qlr.compiler then says how to build it)."""

import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))


def _extension() -> list:
    build = os.environ.get("QLR_BUILD_DIR") or os.path.join(HERE, "..", "build")
    return sorted(glob.glob(os.path.join(build, "python", "qlr", "_compiler*.so")))


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        for path in _extension()[:1]:
            target = os.path.join(self.build_lib, "qlr", os.path.basename(path))
            shutil.copyfile(path, target)


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:  # a platform wheel when it has one
        return bool(_extension())


setup(cmdclass={"build_py": BuildPy}, distclass=BinaryDistribution)
