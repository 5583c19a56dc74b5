"""The clipsearch command line and the local process supervisor behind `clipsearch up`."""
