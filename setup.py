"""Package layout: dissectors/ and rules/ sit at the top of the source tree yet install as
otsentry.dissectors and otsentry.rules, so no bare generic top-level name lands in site-packages."""

from setuptools import Extension, find_packages, setup

MAPPED = ("dissectors", "rules")

packages = find_packages(include=["otsentry", "otsentry.*"])
for top in MAPPED:
    packages += ["otsentry." + name for name in find_packages(include=[top, top + ".*"])]

setup(
    packages=packages,
    package_dir={"otsentry": "otsentry", **{f"otsentry.{top}": top for top in MAPPED}},
    # The compiled pcap record loop (see otsentry/accel.py): optional, so an install without a C
    # compiler still succeeds and runs the pure-Python path.
    ext_modules=[
        Extension(
            "otsentry._speedups",
            ["otsentry/_speedups.c", "otsentry/_flowpath.c", "otsentry/_eventline.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ],
)
