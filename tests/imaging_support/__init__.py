"""Image generators for the imaging tests: real files written with Pillow, small and fast."""
