from setuptools import find_packages, setup

setup(
    name="reid",
    version="0.1.0",
    description="Config-driven training and evaluation of person and vehicle re-identification models",
    packages=find_packages(include=["reid", "reid.*"]),
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
        "dev": [
            "pytest>=7.4",
            "pytest-timeout>=2.1",
            "ruff==0.17.6",
            "mypy==2.4.1",
            "matplotlib>=3.7",
        ],
        "figures": ["matplotlib>=3.7"],
        "faiss": ["faiss-cpu>=1.7.4"],
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
