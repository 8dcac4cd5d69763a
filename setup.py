"""tf_ardm: Autoregressive Diffusion Models in TensorFlow/Keras."""
import setuptools

# The stack is pinned by tensorflow-compression 2.14.1, which needs TF 2.14
# (and so Python <= 3.11, numpy < 2, protobuf < 5).
INSTALL_REQUIRES = [
    "tensorflow==2.14.1",
    "tensorflow-probability==0.22.1",
    "tensorflow-compression==2.14.1",
    "tensorflow-datasets==4.9.3",
    "tensorflow-metadata==1.15.0",
    "array-record<0.6",
    # protobuf 4.25 ships the compiled (upb) backend; 3.20 on Python 3.11 is
    # pure Python, which made each SavedModel export take minutes.
    "protobuf>=4.25,<5",
    "numpy>=1.23,<2",
    "scipy~=1.11.0",
    "absl-py",
    "scikit-learn>=1.3",
    "pillow",
    "matplotlib>=3.7,<3.11",
    "brotli==1.2.1",
    "zstandard==0.25.0",
]

setuptools.setup(
    name="tf_ardm",
    version="0.1.0",
    description="Autoregressive Diffusion Models (Hoogeboom et al., ICLR 2022) "
                "in TensorFlow/Keras, with range-coded lossless compression.",
    packages=setuptools.find_packages(include=["tf_ardm", "tf_ardm.*"]),
    python_requires=">=3.9,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=7", "pytest-timeout"]},
)
