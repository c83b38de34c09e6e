"""One distribution, `trustmesh`, mapping the card's top-level folders to import names.

| folder                      | import name              |
| --------------------------- | ------------------------ |
| trustmesh/                  | trustmesh                |
| contracts/                  | trustmesh.contracts      |
| scheduling/iot-data-tp/     | trustmesh.tp.iot_data    |
| scheduling/federation-tp/   | trustmesh.tp.federation  |
| compute-node/               | trustmesh.compute        |
| iot-node/                   | trustmesh.iot            |
| devnet/                     | trustmesh.devnet         |
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

FOLDERS = {
    "trustmesh": "trustmesh",
    "trustmesh.contracts": "contracts",
    "trustmesh.tp.iot_data": "scheduling/iot-data-tp",
    "trustmesh.tp.federation": "scheduling/federation-tp",
    "trustmesh.compute": "compute-node",
    "trustmesh.iot": "iot-node",
    "trustmesh.devnet": "devnet",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for name, folder in FOLDERS.items():
        package_dir[name] = folder
        packages.append(name)
        for sub in find_packages(where=folder, exclude=["tests", "tests.*"]):
            if name == "trustmesh" and sub.split(".")[0] in {"contracts"}:
                continue
            packages.append(f"{name}.{sub}")
    return sorted(set(packages)), package_dir


def _requirements(filename: str) -> list[str]:
    lines = (HERE / filename).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


PACKAGES, PACKAGE_DIR = _packages()

setup(
    name="trustmesh",
    version="0.1.0",
    description="Federated learning for open IoT environments, coordinated through a Sawtooth ledger",
    python_requires=">=3.11",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"": ["*.json", "*.lua", "*.js"]},
    include_package_data=True,
    install_requires=_requirements("requirements.txt"),
    extras_require={"test": _requirements("requirements-test.txt")},
    entry_points={"console_scripts": ["trustmesh=trustmesh.cli:main"]},
)
