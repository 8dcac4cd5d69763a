"""Lossless coding: the codec, binarised range coding, stream and file formats."""
