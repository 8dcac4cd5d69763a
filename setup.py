"""tf_ardm: Autoregressive Diffusion Models in TensorFlow/Keras."""
import setuptools

# Two TensorFlow stacks, chosen by the Python version (numpy < 2 on both):
#   Python <= 3.11: TF 2.14.1 with tensorflow-compression 2.14.1 (which pins
#     TF 2.14) and Keras 2.14 (tf.keras);
#   Python 3.12: TF 2.17.1 with tensorflow-compression-ops 2.17.0 (the same
#     range coder ops, without tensorflow-compression's Python layers) and
#     tf-keras 2.17 (Keras 2; tf_ardm/__init__.py makes tf.keras use it).
_NEW = "python_version>='3.12'"
_OLD = "python_version<'3.12'"
INSTALL_REQUIRES = [
    f"tensorflow==2.14.1; {_OLD}",
    f"tensorflow-probability==0.22.1; {_OLD}",
    f"tensorflow-compression==2.14.1; {_OLD}",
    f"tensorflow==2.17.1; {_NEW}",
    f"tf-keras~=2.17.0; {_NEW}",
    f"tensorflow-probability==0.24.0; {_NEW}",
    f"tensorflow-compression-ops==2.17.0; {_NEW}",
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
    # The `photos` dataset's photographs (skimage.data's bundled files);
    # 0.24.0 has wheels for Python 3.11 and 3.12 and runs on numpy 1.26.
    "scikit-image==0.24.0",
    "pillow",
    # The lossless image codecs the baselines compare with, in-process
    # (WebP, JPEG-XL, JPEG-LS, JPEG 2000, QOI): 2024.9.22 has wheels for
    # Python 3.11 and 3.12 and runs on numpy 1.26.
    "imagecodecs==2024.9.22",
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
    python_requires=">=3.9,<3.13",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=7", "pytest-timeout", "pytest-xdist"]},
)
