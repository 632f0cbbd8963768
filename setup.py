"""Packaging for churnops: metadata comes from settings.ini, the version from churnops/__init__.py."""
import re
from configparser import ConfigParser
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class build_py_with_jobs(build_py):
    "Ship the papermill job notebooks (nbs/jobs/*.ipynb) inside the package as churnops/jobs/, where job_notebook looks first."

    def run(self):
        super().run()
        dest = Path(self.build_lib) / "churnops" / "jobs"
        dest.mkdir(parents=True, exist_ok=True)
        for nb in sorted((here / "nbs" / "jobs").glob("*.ipynb")):
            self.copy_file(str(nb), str(dest / nb.name))

here = Path(__file__).parent
cfg = ConfigParser(delimiters=["="])
cfg.read(here / "settings.ini", encoding="utf-8")
c = cfg["DEFAULT"]
version = re.search(r'__version__\s*=\s*"([^"]+)"', (here / "churnops" / "__init__.py").read_text()).group(1)

setup(
    name=c["lib_name"],
    version=version,
    description=c["description"],
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author=c["author"],
    author_email=c["author_email"],
    license="Apache-2.0",
    python_requires=">=" + c["min_python"],
    packages=find_packages(include=["churnops", "churnops.*"]),
    include_package_data=True,
    cmdclass={"build_py": build_py_with_jobs},
    install_requires=c["requirements"].split(),
    extras_require={"dev": c["dev_requirements"].split()},
    entry_points={"console_scripts": [c["user_console_scripts"]]},
    zip_safe=False,
)
