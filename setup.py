"""Nucleus segmentation for DSB 2018-style data: Keras 3 Mask R-CNN and U-Net.

Install for CPU:  pip install -e ".[cpu,test]"
Install for GPU:  pip install -e ".[gpu]"   (TensorFlow's CUDA build)
"""

from setuptools import find_packages, setup

setup(
    name="nuclei-seg",
    version="0.1.0",
    description="Find and outline every cell nucleus: Keras 3 Mask R-CNN and U-Net, DSB 2018 tools",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mrcnn*", "unet*", "preprocessing*", "tools*"]),
    install_requires=[
        "keras>=3.10,<4",
        "numpy>=1.26",
        "scipy>=1.11",
        "scikit-image>=0.22",
        # imgaug 0.4.0 itself requires opencv-python; we take the same wheel rather
        # than also installing -headless, so only one package owns the cv2 folder.
        # 4.x: OpenCV 5 changed APIs imgaug uses.
        "opencv-python>=4.8,<5",
        "imgaug==0.4.0",
        "h5py>=3.9",
        "pillow>=10",
        "tifffile>=2023.1",
        "tqdm>=4.60",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu>=2.16,<2.22", "tensorboard>=2.16"],
        "gpu": ["tensorflow[and-cuda]>=2.16,<2.22", "tensorboard>=2.16"],
        # jax: the GPU machines train under Keras' JAX backend; tests check that path on the CPU.
        # pytest-xdist: `make test` runs one test process per core (most tests wait on Python, not maths)
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6", "nbclient>=0.7", "nbformat>=5.7", "ipykernel>=6",
                 "jax>=0.4.30"],
    },
)
