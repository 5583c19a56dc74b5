"""Where bytes are kept: the object store (a directory or S3), content-addressed blobs, and their GC."""
