"""Packaging. The distribution is ``reid-toolkit`` (the name ``reid`` on PyPI belongs to an
unrelated project); the import name is ``reid``.

A wheel carries, besides the ``reid`` package: ``configs/`` as ``reid/configs`` (every shipped
config, found by name with ``--config-file``; see ``reid/config/files.py``) and ``tools/`` as
``reid/tools`` (the command-line tools, installed as the ``reid-*`` commands below; ``python
tools/X.py`` keeps working in a checkout).
"""

from setuptools import find_packages, setup

# Command -> the tool's module under tools/ and its entry function.
CONSOLE_SCRIPTS = {
    "reid-train": "train_net:cli",
    "reid-reproduce": "reproduce:cli",
    "reid-extract": "extract_features:main",
    "reid-search": "search:main",
    "reid-export": "export:main",
    "reid-visualize": "visualize:cli",
    "reid-ratio-toy": "ratio_toy:cli",
    "reid-config-keys": "config_keys:cli",
}

EXPORT = ["onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.5"]

setup(
    name="reid-toolkit",
    version="0.1.0",
    description=(
        "Config-driven training and evaluation of person and vehicle re-identification models"
    ),
    packages=find_packages(include=["reid", "reid.*"]) + ["reid.tools", "reid.configs"],
    package_dir={"reid.tools": "tools", "reid.configs": "configs"},
    package_data={"reid.configs": ["*.yml", "*.yaml", "**/*.yml", "**/*.yaml"]},
    entry_points={
        "console_scripts": [
            f"{command} = reid.tools.{target}" for command, target in CONSOLE_SCRIPTS.items()
        ]
    },
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "yacs>=0.1.8",
        "PyYAML>=6.0",
        "tensorboard>=2.12",
        "opencv-python-headless>=4.8",
        "numpy>=1.24",
        "Pillow>=9.0",
        "tqdm>=4.65",
        "scipy>=1.10",
        "h5py>=3.8",
        "matplotlib>=3.7",
        "timm>=1.0",
    ],
    extras_require={
        # The tests export to ONNX and run it with onnxruntime, so dev has the export extra.
        "dev": [
            "pytest>=7.4",
            "pytest-timeout>=2.1",
            "ruff==0.17.6",
            "mypy==2.4.1",
            "matplotlib>=3.7",
            *EXPORT,
        ],
        "figures": ["matplotlib>=3.7"],
        "faiss": ["faiss-cpu>=1.7.4"],
        "export": EXPORT,
        # What fastreid 1.4.0 imports besides torch, for the tests that compare against it.
        # fastreid itself pins torch 1.13.1, so it is installed without its dependencies:
        # pip install --no-deps fastreid==1.4.0 (INSTALL.md; .ci/run does it).
        "fastreid-test": [
            "termcolor>=2.2,<3",
            "tabulate>=0.9,<0.10",
            "faiss-cpu>=1.7.3,<2",
        ],
    },
)
