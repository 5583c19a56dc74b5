"""Bytes to pixels: format sniffing, header checks and decoding (OpenCV, HEIF/AVIF/JPEG XL, camera RAW)."""
