"""Packaging for churnops: metadata comes from settings.ini, the version from churnops/__init__.py."""
import re
from configparser import ConfigParser
from pathlib import Path

from setuptools import find_packages, setup

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
    package_data={"churnops": ["*.yaml", "jobs/*.ipynb"]},
    install_requires=c["requirements"].split(),
    extras_require={"dev": c["dev_requirements"].split()},
    entry_points={"console_scripts": [c["user_console_scripts"]]},
    zip_safe=False,
)
